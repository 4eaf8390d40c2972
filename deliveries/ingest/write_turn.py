"""Taking turns at SQLite's write lock, and writing what the threads of a process queued meanwhile at once.

SQLite lets one transaction write at a time. A connection that finds the lock taken sleeps in SQLite's busy
handler (1, 2, 5, 10 ... up to 100 ms between tries), so the lock often sits free while every waiter sleeps.
Ingest transactions on one machine queue on a lock file next to the database instead (flock, which wakes
the next process as soon as the previous one commits), one thread of a process at a time (flock is held
per process). The thread whose turn it is writes, in one transaction, what every thread of its process
that queued meanwhile brought (group commit); those threads find their writes done when their turn comes.
Other writers (the delivery worker, the admin) still meet ingest in SQLite's busy handler.

Checkpoints (copying the write-ahead log back into the database file) run after the turn: SQLite's own run
inside the commit that crosses 1,000 pages of log, so within the turn, and a batch of 100 events writes
~400 pages (each random index, messageId and userId, changes a page per event). A connection that ingests
switches them off and this process checkpoints once its ingest transactions wrote about CHECKPOINT_PAGES
pages of log (other connections keep SQLite's automatic checkpoints). Ten times SQLite's default: index
pages changed again and again are copied once, which halved the checkpoint work per event (the log then
grows to ~40 MB between checkpoints; journal_size_limit trims it back to 64 MB at most).
"""

from __future__ import annotations

import fcntl
import os
import threading

from django.db.backends.base.base import BaseDatabaseWrapper

from deliveries.ingest.writes import Write, write_alone, write_together

CHECKPOINT_PAGES = 10_000


def _log_pages(rows: int) -> int:
    """Pages of write-ahead log a transaction writing this many rows adds, roughly (measured: 12 for one
    event, ~410 for 100)."""
    return 8 + 4 * rows


class _WriteTurn:
    def __init__(self) -> None:
        self._thread_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued: list[Write] = []
        self._files: dict[tuple[int, str], int] = {}  # (process id, lock file) -> descriptor
        self._checkpoint_lock = threading.Lock()
        self._pages = 0  # of log written by this process since its last checkpoint (roughly: added unlocked)

    def write(self, conn: BaseDatabaseWrapper, write: Write) -> None:
        # Inside a caller's transaction the order of the locks could not be kept: no turn there.
        if conn.vendor != "sqlite" or conn.in_atomic_block or conn.is_in_memory_db():
            write_alone(conn, write)
            return
        conn.ensure_connection()
        if getattr(conn, "_ingest_checkpoints", None) is not conn.connection:
            with conn.cursor() as cursor:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            conn._ingest_checkpoints = conn.connection  # this connection, not a later reconnection
        with self._queue_lock:
            self._queued.append(write)
        group: list[Write] = []
        with self._thread_lock:
            if not write.done:  # nobody took it along: this thread's turn, for everything queued so far
                fd = self._file(f"{conn.settings_dict['NAME']}-ingest.lock")
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    with self._queue_lock:
                        group, self._queued = self._queued, []
                    write_together(conn, group)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        if write.error is not None:
            raise write.error
        self._pages += sum(_log_pages(w.rows()) for w in group)
        if self._pages >= CHECKPOINT_PAGES and self._checkpoint_lock.acquire(blocking=False):
            try:
                self._pages = 0
                with conn.cursor() as cursor:  # PASSIVE: copies what it can, waits for no reader or writer
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.fetchall()
            finally:
                self._checkpoint_lock.release()

    def _file(self, path: str) -> int:
        key = (os.getpid(), path)  # a forked process opens its own: flock locks belong to the open file
        if key not in self._files:
            self._files[key] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._files[key]


write_turn = _WriteTurn()
