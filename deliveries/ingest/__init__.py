"""Taking events in: the Tracking API and webhook views, normalisation, and the write path (rows, the SQLite write
turn, store). A request reads straight down: view -> normalise -> store -> rows and the write turn."""
