"""The delivery engine: claim due deliveries, send them through their vendor, record what happened, retry.

Retries are data (Delivery.next_attempt_at, attempts); django-q2 only runs `drain` tasks. Each running drain
holds one of its destination's concurrency slots (a Slot row), so the limit holds across all workers and
machines; the rate limit is a token bucket row. A drain that runs out of work waits a moment for more (a steady
stream then needs no task per event). A sweeper counts the attempts of workers that died (expired leases) and
queues due work.

One room per step: `slots` (concurrency slots, kicks), `rate` (the token bucket), `claim` (claims and leases),
`send` (vendors and their results), `record` (attempts and outcomes), `drain` and `send_once` (the tasks),
`sweep` (the sweeper, Retry now); beside them `routing` (where an event goes), `rollups` (outcome counts) and
`schema_fold` (the Schema page's counts). Nothing here imports the ingest stage or the pages.
"""
