"""Answers while the database is unreachable: 503 with Retry-After and a JSON error, one warning line in the log.

PostgreSQL restarting, a refused connection, a connection cut mid-transaction, or SQLite locked beyond its busy
timeout: the request could not be served and nothing it brought was stored (or, when the cut came during the
commit, it may have been: the sender's retry is then a duplicate, acknowledged and not stored twice). Either
way the sender must retry, which a 503 with Retry-After says to every Segment and RudderStack SDK and to the
tools that post webhooks; a 500 would look like a bug in the hub, and a 2xx would lose the events.

Django closes a connection that failed once the request ends (`errors_occurred`, then `is_usable()`), and the
health check of CONN_HEALTH_CHECKS replaces one that died between requests, so the first request after the
database is back is served. The Tracking API's and the management API's exception handlers answer in their own
JSON shapes with `outage_response`; this module's middleware answers for every other view (the admin).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("cdphub.outage")

RETRY_AFTER_SECONDS = 5
CODE = "database_unavailable"
MESSAGE = (
    f"The database is unavailable for a moment: retry in {RETRY_AFTER_SECONDS} s (an event sent again is stored once)."
)
LOG_EVERY_SECONDS = 10.0  # one warning line per process this often during an outage, not one per request

# SQLite raises OperationalError for mistakes in SQL too ("no such table"): only these mean it is unreachable.
SQLITE_OUTAGES = ("database is locked", "database table is locked", "unable to open", "disk i/o error")


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or went away, rather than that a query was wrong."""
    if isinstance(exc, InterfaceError):  # "connection already closed": the server ended it
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__ or exc
    if type(cause).__module__.startswith("sqlite3"):
        return any(words in str(cause).lower() for words in SQLITE_OUTAGES)
    return True  # psycopg's OperationalError: refused, terminated, server closed the connection


def unreachable(exc: BaseException) -> bool:
    """is_outage(), or the broker (Redis) refusing or dropping the connection."""
    return is_outage(exc) or isinstance(exc, RedisConnectionError | RedisTimeoutError)


class Throttled:
    """A warning said in one line at most every LOG_EVERY_SECONDS per process, with how often it happened
    meanwhile: an outage of a few seconds under load is one line, not a traceback per request."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._unlogged = 0

    def warn(self, message: str, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if now - self._last < LOG_EVERY_SECONDS:
                return
            count, self._unlogged, self._last = self._unlogged, 0, now
        self.log.warning("%s (%s times since the last such line): %s", message, count, one_line(exc))


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


_refusals = Throttled(log)


def note_outage(where: str, exc: BaseException) -> None:
    """Log the refusal (throttled: one line per outage and process, not a traceback per request)."""
    _refusals.warn(f"database unavailable: answered 503 (retrying is safe), the last to {where}", exc)


def outage_response(body: dict[str, Any], where: str, exc: BaseException) -> HttpResponse:
    """A 503 with Retry-After and this JSON body, the refusal logged."""
    note_outage(where, exc)
    return mark_refused(JsonResponse(body, status=503))


def mark_refused(response: HttpResponse) -> HttpResponse:
    """Retry-After, and no "Service Unavailable" line from Django's request logger: note_outage() said it."""
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response._has_been_logged = True  # django.utils.log.log_response() skips a response so marked
    return response


class DatabaseOutageMiddleware:
    """A view that found the database unreachable answers 503, not Django's 500 page with a logged traceback."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not is_outage(exc):
            return None
        body = {"success": False, "code": CODE, "message": MESSAGE}
        return outage_response(body, f"{request.method} {request.path}", exc)


_stopped_tasks = Throttled(log)


def rides_out_outages(task: Callable[..., Any]) -> Callable[..., Any]:
    """A worker task that ends quietly when the database or the broker goes away mid-task, one line now and then,
    instead of django-q2 logging a failure with a traceback (and failing to save it, the database being down).
    What the task held is taken back when its leases end (deliveries/engine/sweep.py)."""

    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exc:
            if not unreachable(exc):
                raise
            _stopped_tasks.warn(f"{task.__name__} stopped: the database or the broker is unreachable", exc)
            return "unreachable"

    return run
