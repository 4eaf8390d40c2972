"""Validate, normalise and store Segment-spec events: the one ingest path for the Tracking API and webhooks."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import m2m_changed, post_delete, post_save

from deliveries.engine import kick
from deliveries.models import Delivery, Event
from deliveries.routing import decide
from integrations.models import Destination, Source
from integrations.spec import EVENT_TYPES

log = logging.getLogger("cdphub.ingest")

MAX_EVENT_BYTES = 32 * 1024
MAX_ID_LENGTH = 255
REJECTED_PAYLOAD_EXCERPT = 2048

# Fields that must be JSON objects when present, per type ("properties as a list" is refused).
_OBJECT_FIELDS = {
    "identify": ("traits",),
    "track": ("properties",),
    "page": ("properties",),
    "screen": ("properties",),
    "group": ("traits",),
    "alias": (),
}
_STRING_FIELDS = {"track": ("event",), "page": ("name", "category"), "screen": ("name", "category")}


T = TypeVar("T")

# Look-ups made on every request ----------------------------------------------------------------------
#
# The source of a write key and the destinations of a source are read on every request; each process keeps
# them for INGEST_CACHE_SECONDS (CDPHUB_INGEST_CACHE_SECONDS, default 5). A save or delete of a Source or a
# Destination, or a change of a destination's sources, forgets everything in the process that made it
# (again when its transaction commits); other processes (the other web workers, an admin elsewhere) see the
# change within that many seconds. So disabling a source, or a destination, stops ingest or routing within
# that time everywhere. Bulk updates (QuerySet.update) send no signal and rely on the time limit alone.

CACHE_MAX_ENTRIES = 1000  # unknown write keys are remembered too; a flood of them must not grow memory
_memo: dict[Any, tuple[float, Any]] = {}


def remembered(key: Any, load: Callable[[], T]) -> T:
    """Return `load()`, computed at most once per INGEST_CACHE_SECONDS in this process (0: never kept)."""
    ttl = settings.INGEST_CACHE_SECONDS
    if ttl <= 0:
        return load()
    now = time.monotonic()
    hit = _memo.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = load()
    if len(_memo) >= CACHE_MAX_ENTRIES:
        _memo.clear()
    _memo[key] = (now + ttl, value)
    return value


def forget(**kwargs: Any) -> None:
    """Drop every remembered look-up; a reader may reload the old row until a save commits, so again then."""
    _memo.clear()
    transaction.on_commit(_memo.clear)


for _model in (Source, Destination):
    post_save.connect(forget, sender=_model, dispatch_uid=f"ingest-forget-saved-{_model.__name__}")
    post_delete.connect(forget, sender=_model, dispatch_uid=f"ingest-forget-deleted-{_model.__name__}")
m2m_changed.connect(forget, sender=Destination.sources.through, dispatch_uid="ingest-forget-destination-sources")


def source_for_write_key(write_key: str) -> Source | None:
    """The source with this write key (enabled or not), or None."""
    return remembered(
        ("source", write_key),
        lambda: Source.objects.filter(write_key=write_key).only("id", "enabled", "kind", "write_key").first(),
    )


def destinations_of(source: Source) -> list[Destination]:
    """Every destination the source feeds (disabled ones too: routing records why they get nothing).

    Credentials are left out: routing does not need them, and secrets are not kept in memory for this.
    """
    return remembered(
        ("destinations", source.pk),
        lambda: list(Destination.objects.filter(sources=source.pk).defer("credentials")),
    )


class EventError(Exception):
    """An event that cannot be accepted; `code` is stable, `message` tells the sender what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Rejection:
    code: str
    reason: str
    message_id: str
    index: int | None = None
    item: Any = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messageId": self.message_id, "code": self.code, "reason": self.reason}
        if self.index is not None:
            out = {"index": self.index, **out}
        return out


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)  # messageIds of the events stored
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


# A batch's events share receivedAt and often sentAt and timestamps: each distinct value is parsed and
# formatted once (the caches hold a few thousand recent values per process).


@lru_cache(maxsize=4096)
def iso(dt: datetime) -> str:
    """Format as Segment does: UTC, milliseconds, a Z."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _from_iso(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    # Segment's precision is the millisecond; cutting here keeps the stored fields consistent with the rule.
    dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise EventError("invalid_timestamp", f"{name} must be an ISO-8601 date-time string, not {_kind(value)}.")
    try:
        return _from_iso(value)
    except ValueError:
        raise EventError("invalid_timestamp", f"{name} is not an ISO-8601 date-time: {value[:60]!r}.") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _identifier(item: dict[str, Any], name: str) -> str:
    """Return an id field as a string ('' when absent); numbers are accepted and stringified."""
    value = item.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
        item[name] = value
    else:
        raise EventError("invalid_type", f"{name} must be a string, not {_kind(value)}.")
    if len(value) > MAX_ID_LENGTH:
        raise EventError("invalid_value", f"{name} is longer than {MAX_ID_LENGTH} characters.")
    return value


def normalise(
    item: Any,
    event_type: str,
    received_at: datetime,
    *,
    sent_at: Any = None,
    context: dict[str, Any] | None = None,
    integrations: dict[str, Any] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """Validate one event and return the payload destinations get; raise EventError when it is refused.

    `sent_at`, `context` and `integrations` are the batch-level values, merged under the item's own.
    """
    if not isinstance(item, dict):
        raise EventError("invalid_event", f"An event must be a JSON object, not {_kind(item)}.")
    if event_type not in EVENT_TYPES:
        raise EventError(
            "invalid_type",
            f"type must be one of {', '.join(EVENT_TYPES)}; got {str(event_type)[:40]!r}."
            if event_type is not None
            else "Every event in a batch needs a type (identify, track, page, screen, group or alias).",
        )
    payload = dict(item)
    payload.pop("writeKey", None)
    payload["type"] = event_type

    user_id = _identifier(payload, "userId")
    anonymous_id = _identifier(payload, "anonymousId")
    if event_type == "alias":
        previous_id = _identifier(payload, "previousId")
        if not previous_id or not user_id:
            raise EventError("missing_field", "An alias needs both previousId and userId.")
    elif not user_id and not anonymous_id:
        raise EventError("missing_identity", "Every event needs a userId or an anonymousId.")
    if event_type == "group" and not _identifier(payload, "groupId"):
        raise EventError("missing_field", "A group call needs a groupId.")

    for name in _STRING_FIELDS.get(event_type, ()):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            raise EventError("invalid_type", f"{name} must be a string, not {_kind(value)}.")
    if event_type == "track":
        name = payload.get("event")
        if not name or not name.strip():
            raise EventError("missing_field", "A track call needs an event name (the event field).")
    for name in (*_OBJECT_FIELDS[event_type], "context", "integrations"):
        value = payload.get(name)
        if value is not None and not isinstance(value, dict):
            raise EventError("invalid_type", f"{name} must be an object, not {_kind(value)}.")
    for name in _OBJECT_FIELDS[event_type]:
        if payload.get(name) is None:
            payload[name] = {}
    if event_type == "identify" and not payload["traits"]:
        # RudderStack SDKs send identify traits in context.traits only; mappings look for traits.*
        context_traits = (payload.get("context") or {}).get("traits")
        if isinstance(context_traits, dict):
            payload["traits"] = dict(context_traits)

    message_id = payload.get("messageId")
    if message_id is None or message_id == "":
        payload["messageId"] = new_message_id()
    elif not isinstance(message_id, str):
        raise EventError("invalid_type", f"messageId must be a string, not {_kind(message_id)}.")
    elif len(message_id) > MAX_ID_LENGTH:
        raise EventError("invalid_value", f"messageId is longer than {MAX_ID_LENGTH} characters.")

    if context:
        payload["context"] = {**context, **(payload.get("context") or {})}
    if integrations:
        payload["integrations"] = {**integrations, **(payload.get("integrations") or {})}
    if ip:
        ctx = payload.get("context")
        if ctx is None:
            payload["context"] = {"ip": ip}
        elif "ip" not in ctx:
            payload["context"] = {**ctx, "ip": ip}

    _normalise_times(payload, received_at, sent_at)
    return payload


def _normalise_times(payload: dict[str, Any], received_at: datetime, batch_sent_at: Any) -> None:
    """Set receivedAt, originalTimestamp and the clock-skew-corrected timestamp (Segment's spec)."""
    original_raw = payload.get("originalTimestamp")
    if original_raw is None:
        original_raw = payload.get("timestamp")
    sent_raw = payload.get("sentAt")
    if sent_raw is None:
        sent_raw = batch_sent_at
    original = (
        parse_time(original_raw, "originalTimestamp" if "originalTimestamp" in payload else "timestamp")
        if original_raw is not None
        else None
    )
    sent = parse_time(sent_raw, "sentAt") if sent_raw is not None else None
    try:
        if original is not None and sent is not None:
            # The device clock may be wrong; the gap between call and send is not: timestamp = receivedAt -
            # (sentAt - originalTimestamp).
            timestamp = received_at - (sent - original)
        else:
            timestamp = original or received_at
        payload["timestamp"] = iso(timestamp)
        # Converting an offset date at the edge of the calendar to UTC can overflow too (0001-01-01T00:00+05:00).
        payload["originalTimestamp"] = iso(original or received_at)
        if sent is not None:
            payload["sentAt"] = iso(sent)
    except (OverflowError, ValueError):
        raise EventError("invalid_timestamp", "timestamp, sentAt and originalTimestamp are too far apart.") from None
    payload["receivedAt"] = iso(received_at)
    payload["_timestamp"] = timestamp  # a datetime for the column; removed before storing


def new_message_id() -> str:
    """A messageId for an event that came without one: a UUID version 7 (RFC 9562), milliseconds since the
    epoch then 74 random bits. The ids the hub assigns rise with time, so the two messageId indexes take each
    at their end instead of on a random page (with uuid4 each event changed two more pages of the database)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    value = (ms & (1 << 48) - 1) << 80 | 7 << 76 | (rand >> 62 & 0xFFF) << 64 | 2 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


def rejection_for(item: Any, error: EventError, index: int | None = None) -> Rejection:
    message_id = item.get("messageId") if isinstance(item, dict) else None
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_ID_LENGTH:
        message_id = str(uuid.uuid4())
    return Rejection(error.code, error.message, message_id, index, item)


def _rejected_values(source: Source, rejection: Rejection) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The stored excerpt of a refused item, and its Event column values before the payload and times."""
    item = rejection.item
    raw = {k: v for k, v in item.items() if k != "writeKey"} if isinstance(item, dict) else None
    if raw is not None and len(orjson.dumps(raw)) > REJECTED_PAYLOAD_EXCERPT * 4:
        raw = None
    if raw is None:
        text = item if isinstance(item, str) else orjson.dumps(item).decode(errors="replace") if item else ""
        raw = {"raw": text[:REJECTED_PAYLOAD_EXCERPT], "truncated": len(text) > REJECTED_PAYLOAD_EXCERPT}
    kind = item.get("type") if isinstance(item, dict) else None
    name = item.get("event") if isinstance(item, dict) else None
    user = item.get("userId") if isinstance(item, dict) else None
    anon = item.get("anonymousId") if isinstance(item, dict) else None
    return raw, (
        source.pk,
        rejection.message_id,
        kind if kind in EVENT_TYPES else Event.Type.INVALID,
        name[:255] if isinstance(name, str) else "",
        user[:255] if isinstance(user, str) else "",
        anon[:255] if isinstance(anon, str) else "",
        email_of(item) if isinstance(item, dict) else "",
    )


def email_of(payload: dict[str, Any]) -> str:
    """The person's email, for the Debugger's search: traits, then context.traits, then properties."""
    context = payload.get("context")
    context_traits = context.get("traits") if isinstance(context, dict) else None
    for holder in (payload.get("traits"), context_traits, payload.get("properties")):
        if isinstance(holder, dict):
            email = holder.get("email")
            if isinstance(email, str) and email:
                return email[:255].lower()
    return ""


# Writing rows ---------------------------------------------------------------------------------------------
#
# SQLite has one writer at a time, so everything a request writes is built before its transaction takes the
# write lock, and the transaction holds only INSERT statements. They are plain multi-row INSERTs built from
# the models' fields rather than bulk_create, which spent ~100 us per event preparing values field by field
# (three times the time of the insert itself); payloads are serialised with orjson on SQLite, where the JSON
# column is text. Fields an INSERT does not list get their model default, so a new field with a default
# needs no change here. When outbox rows need their events' ids, the events' INSERT returns them
# (INSERT ... RETURNING, SQLite >= 3.35); without destinations it returns nothing, which keeps the write lock
# shorter: Python's sqlite3 hands the GIL to other threads and waits to get it back for every returned row.

MAX_ROWS_PER_INSERT = 500


class _Insert:
    """INSERT statements for one model: values per row for `varying` fields, its default for every other."""

    def __init__(self, model: type[models.Model], varying: tuple[str, ...]) -> None:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        by_name = {f.attname: f for f in fields}
        self.table = model._meta.db_table
        self.varying = [by_name[name] for name in varying]
        self.constant = [f for f in fields if f.attname not in varying]
        self._sql: dict[str, tuple[str, str]] = {}  # database vendor -> "INSERT ... VALUES ", "(%s, ...)"

    def constants(self, conn: BaseDatabaseWrapper, now: datetime) -> tuple[Any, ...]:
        return tuple(
            f.get_db_prep_save(
                now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default(), conn
            )
            for f in self.constant
        )

    def sql(self, conn: BaseDatabaseWrapper, count: int, returning: str) -> str:
        if conn.vendor not in self._sql:
            quote = conn.ops.quote_name
            columns = ", ".join(quote(f.column) for f in self.varying + self.constant)
            row = "(" + ", ".join(["%s"] * (len(self.varying) + len(self.constant))) + ")"
            self._sql[conn.vendor] = (f"INSERT INTO {quote(self.table)} ({columns}) VALUES ", row)
        start, row = self._sql[conn.vendor]
        return start + ", ".join([row] * count) + (f" RETURNING {returning}" if returning else "")

    def run(self, rows: list[tuple[Any, ...]], constants: tuple[Any, ...], returning: str = "") -> list[tuple]:
        """Insert `rows` (values of the varying fields, ready for the database); the RETURNING rows."""
        conn = transaction.get_connection()
        width = len(self.varying) + len(self.constant)
        per_statement = max(1, min(_max_params(conn) // width, MAX_ROWS_PER_INSERT))
        returned: list[tuple] = []
        with conn.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                cursor.execute(
                    self.sql(conn, len(chunk), returning), [value for row in chunk for value in (*row, *constants)]
                )
                if returning:
                    returned += cursor.fetchall()
        return returned


_EVENT_FIELDS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "email",
    "payload",
    "received_at",
    "timestamp",
    "status",
    "reject_reason",
)
_DELIVERY_FIELDS = (
    "event_id",
    "destination_id",
    "status",
    "next_attempt_at",
    "error_code",
    "error_message",
    "created_at",
)
EVENTS = _Insert(Event, _EVENT_FIELDS)
DELIVERIES = _Insert(Delivery, _DELIVERY_FIELDS)


def _max_params(conn: BaseDatabaseWrapper) -> int:
    if conn.vendor == "sqlite":
        conn.ensure_connection()
        return conn.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return conn.features.max_query_params or 65535  # PostgreSQL's wire protocol counts parameters in 16 bits


def _json_for_db(value: Any, conn: BaseDatabaseWrapper) -> Any:
    if conn.vendor == "sqlite":
        try:
            return orjson.dumps(value).decode()
        except (orjson.JSONEncodeError, TypeError):
            pass  # e.g. an integer past 64 bits from a payload not parsed by orjson: Django's encoder copes
    return _PAYLOAD_FIELD.get_db_prep_save(value, conn)


_PAYLOAD_FIELD = Event._meta.get_field("payload")


@dataclass
class _Write:
    """What one request writes, built before any lock: events (by messageId), their outbox rows, rejections."""

    source: Source
    received_at: datetime
    events: dict[str, tuple[Any, ...]]  # messageId -> column values, in the order received
    routes: dict[str, list[tuple[Any, ...]]]  # messageId -> its outbox rows, without the event id
    rejected_rows: list[tuple[Any, ...]]
    fresh: list[str]  # the messageIds to insert (not stored yet, as far as is known)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)  # the outbox rows written
    done: bool = False
    error: BaseException | None = None

    def rows(self) -> int:
        return sum(1 + len(self.routes[m]) for m in self.fresh) + len(self.rejected_rows)


def _insert(conn: BaseDatabaseWrapper, write: _Write) -> None:
    """The INSERT statements of one request, inside the caller's transaction."""
    write.outbox = []
    if write.fresh:
        rows = [write.events[m] for m in write.fresh]
        constants = EVENTS.constants(conn, write.received_at)
        if any(write.routes[m] for m in write.fresh):
            quote = conn.ops.quote_name
            returning = f"{quote(Event._meta.pk.column)}, {quote('message_id')}"
            ids = {m: pk for pk, m in EVENTS.run(rows, constants, returning)}
            write.outbox = [(ids[m], *values) for m in write.fresh for values in write.routes[m]]
            DELIVERIES.run(write.outbox, DELIVERIES.constants(conn, write.received_at))
        else:
            EVENTS.run(rows, constants)
    if write.rejected_rows:
        EVENTS.run(write.rejected_rows, EVENTS.constants(conn, write.received_at))


def _write_alone(conn: BaseDatabaseWrapper, write: _Write, check_first: bool = False) -> None:
    """One request in its own transaction; a messageId stored meanwhile fails the insert, and the second pass
    asks which are stored, inside the transaction, and skips them."""
    for attempt in (0, 1):
        try:
            with transaction.atomic():
                if attempt or check_first:
                    stored = _stored_message_ids(write.source, write.fresh)
                    write.fresh = [m for m in write.fresh if m not in stored]
                _insert(conn, write)
            return
        except IntegrityError:
            if attempt:
                forget()  # e.g. a source or destination deleted by another process: read them afresh
                raise


def _write_together(conn: BaseDatabaseWrapper, group: list[_Write]) -> None:
    """Several requests of this process in one transaction (one commit, one turn at the lock); if any insert
    fails on a messageId, each request again in its own transaction, asking first."""
    seen: set[tuple[int, str]] = set()
    for write in group:  # a messageId two requests of the group both bring is the later one's duplicate
        keys = [(write.source.pk, m) for m in write.fresh]
        write.fresh = [m for m, key in zip(write.fresh, keys, strict=True) if key not in seen]
        seen.update(keys)
    try:
        try:
            with transaction.atomic():
                for write in group:
                    _insert(conn, write)
        except IntegrityError:
            for write in group:
                try:
                    _write_alone(conn, write, check_first=True)
                except Exception as exc:
                    write.error = exc
    except Exception as exc:
        for write in group:
            write.error = exc
    finally:
        for write in group:
            write.done = True


# Taking turns at SQLite's write lock ----------------------------------------------------------------------
#
# SQLite lets one transaction write at a time. A connection that finds the lock taken sleeps in SQLite's busy
# handler (1, 2, 5, 10 ... up to 100 ms between tries), so the lock often sits free while every waiter sleeps.
# Ingest transactions on one machine queue on a lock file next to the database instead (flock, which wakes
# the next process as soon as the previous one commits), one thread of a process at a time (flock is held
# per process). The thread whose turn it is writes, in one transaction, what every thread of its process
# that queued meanwhile brought (group commit); those threads find their writes done when their turn comes.
# Other writers (the delivery worker, the admin) still meet ingest in SQLite's busy handler.
#
# Checkpoints (copying the write-ahead log back into the database file) run after the turn: SQLite's own run
# inside the commit that crosses 1,000 pages of log, so within the turn, and a batch of 100 events writes
# ~400 pages (each random index, messageId and userId, changes a page per event). A connection that ingests
# switches them off and this process checkpoints once its ingest transactions wrote about CHECKPOINT_PAGES
# pages of log (other connections keep SQLite's automatic checkpoints). Ten times SQLite's default: index
# pages changed again and again are copied once, which halved the checkpoint work per event (the log then
# grows to ~40 MB between checkpoints; journal_size_limit trims it back to 64 MB at most).

CHECKPOINT_PAGES = 10_000


def _log_pages(rows: int) -> int:
    """Pages of write-ahead log a transaction writing this many rows adds, roughly (measured: 12 for one
    event, ~410 for 100)."""
    return 8 + 4 * rows


class _WriteTurn:
    def __init__(self) -> None:
        self._thread_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued: list[_Write] = []
        self._files: dict[tuple[int, str], int] = {}  # (process id, lock file) -> descriptor
        self._checkpoint_lock = threading.Lock()
        self._pages = 0  # of log written by this process since its last checkpoint (roughly: added unlocked)

    def write(self, conn: BaseDatabaseWrapper, write: _Write) -> None:
        # Inside a caller's transaction the order of the locks could not be kept: no turn there.
        if conn.vendor != "sqlite" or conn.in_atomic_block or conn.is_in_memory_db():
            _write_alone(conn, write)
            return
        conn.ensure_connection()
        if getattr(conn, "_ingest_checkpoints", None) is not conn.connection:
            with conn.cursor() as cursor:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            conn._ingest_checkpoints = conn.connection  # this connection, not a later reconnection
        with self._queue_lock:
            self._queued.append(write)
        group: list[_Write] = []
        with self._thread_lock:
            if not write.done:  # nobody took it along: this thread's turn, for everything queued so far
                fd = self._file(f"{conn.settings_dict['NAME']}-ingest.lock")
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    with self._queue_lock:
                        group, self._queued = self._queued, []
                    _write_together(conn, group)
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


def _stored_message_ids(source: Source, message_ids: list[str]) -> set[str]:
    """Which of these messageIds the source has accepted already: a probe of the unique (source, message_id)
    index per id (no ORDER BY: Event's default ordering made SQLite walk every row of the source instead)."""
    conn = transaction.get_connection()
    quote = conn.ops.quote_name
    per_statement = max(1, _max_params(conn) - 2)
    stored: set[str] = set()
    with conn.cursor() as cursor:
        for start in range(0, len(message_ids), per_statement):
            chunk = message_ids[start : start + per_statement]
            cursor.execute(
                f"SELECT {quote('message_id')} FROM {quote(Event._meta.db_table)} WHERE {quote('source_id')} = %s "
                f"AND {quote('status')} = %s AND {quote('message_id')} IN ({', '.join(['%s'] * len(chunk))})",
                [source.pk, Event.Status.ACCEPTED, *chunk],
            )
            stored.update(row[0] for row in cursor.fetchall())
    return stored


def store(
    source: Source,
    payloads: list[dict[str, Any]],
    rejections: list[Rejection],
    received_at: datetime,
) -> IngestResult:
    """Write accepted events (deduplicated on messageId per source), their outbox rows and rejections in one
    transaction; `accepted` lists the messageIds of the events stored."""
    result = IngestResult(rejected=rejections)
    conn = transaction.get_connection()
    ops = conn.ops
    when = ops.adapt_datetimefield_value(received_at)
    times: dict[datetime, Any] = {received_at: when}  # values for the database, each distinct time once
    accepted = Event.Status.ACCEPTED

    events: dict[str, tuple[Any, ...]] = {}
    routes: dict[str, list[tuple[Any, ...]]] = {}
    destinations = destinations_of(source) if payloads else []
    for payload in payloads:
        message_id = payload["messageId"]
        timestamp = payload.pop("_timestamp")
        if message_id in events:
            result.duplicates += 1
            continue
        name = payload.get("event")
        stamp = times.get(timestamp)
        if stamp is None:
            stamp = times[timestamp] = ops.adapt_datetimefield_value(timestamp)
        events[message_id] = (
            source.pk,
            message_id,
            payload["type"],
            name[:255] if isinstance(name, str) else "",
            payload.get("userId") or "",
            payload.get("anonymousId") or "",
            email_of(payload),
            _json_for_db(payload, conn),
            when,
            stamp,
            accepted,
            "",
        )
        routes[message_id] = [_outbox_values(destination, payload, when) for destination in destinations]
    rejected_rows = []
    for rejection in rejections:
        raw, values = _rejected_values(source, rejection)
        reason = f"{rejection.code}: {rejection.reason}"
        rejected_rows.append((*values, _json_for_db(raw, conn), when, when, Event.Status.REJECTED, reason))

    # A batch asks which of its messageIds are stored already, before taking the write lock; a single new
    # event is inserted straight away and a duplicate shows as an IntegrityError (then it is asked, inside
    # the lock, as is everything a request that stored the same messageId meanwhile made fail).
    fresh = list(events)
    if len(fresh) > 1:
        stored = _stored_message_ids(source, fresh)
        fresh = [m for m in fresh if m not in stored]
    write = _Write(source, received_at, events, routes, rejected_rows, fresh)
    if fresh or rejected_rows:
        write_turn.write(conn, write)
    result.accepted = write.fresh
    result.duplicates += len(events) - len(write.fresh)
    # Committed: wake a worker for each destination with new work.
    for destination_id in {row[1] for row in write.outbox if row[2] == Delivery.Status.PENDING}:
        try:
            kick(destination_id)
        except Exception:  # the events are stored; the sweeper queues them within seconds
            log.exception("could not queue delivery to destination %s", destination_id)
    return result


def _outbox_values(destination: Destination, payload: dict[str, Any], when: Any) -> tuple[Any, ...]:
    """One Delivery row for an event, pending or filtered with why (without the event id)."""
    decision = decide(destination, payload)
    status = Delivery.Status.PENDING if decision.send else Delivery.Status.FILTERED
    return (destination.pk, status, when if decision.send else None, decision.code, decision.reason, when)
