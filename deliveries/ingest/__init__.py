"""Taking events in: the Tracking API and webhook views, normalisation, and the write path (rows, the SQLite write
turn, store). A request reads straight down: view -> normalise -> store -> rows and the write turn.

`normalise` is the stage's word for "an event as the Tracking API accepts it"; code outside the stage (the source
functions' tests) normalises their events with it.
"""

from deliveries.ingest.normalisation import normalise

__all__ = ["normalise"]
