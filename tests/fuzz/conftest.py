"""What the fuzz tests share: hypothesis settings bounded for `make test` (CDPHUB_FUZZ_EXAMPLES raises them), a
test client that counts its requests (printed at the end of the session), and a log watcher.

Every fuzz test asserts the same four things of each generated request: no 5xx, nothing logged at ERROR (no
traceback), nothing accepted for a request refused as a whole, and exactly what an accepted one reports stored.
`make test` runs them on SQLite only (`one_database`: in-process requests whose subject is the parsers); the NUL
characters PostgreSQL's jsonb cannot store have small dedicated tests that run on both databases."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, settings

# Each test's number of examples fits `make test`'s budget (a few thousand requests, under a minute in all);
# CDPHUB_FUZZ_EXAMPLES=20000 gives every test that many (the long runs). Derandomized, so `make test` draws the same
# inputs every run (no flaky CI); CDPHUB_FUZZ_RANDOM=1 draws new ones. No example database is written into the
# tree: a failure prints the blob that reproduces it (@reproduce_failure).
EXAMPLES = os.environ.get("CDPHUB_FUZZ_EXAMPLES")
RANDOM = os.environ.get("CDPHUB_FUZZ_RANDOM") == "1"


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a fuzz test that makes `examples` requests in `make test`."""
    return settings(
        max_examples=int(EXAMPLES) if EXAMPLES else examples,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


_counts: dict[str, float] = {}


class CountingClient(Client):
    """Django's test client, answering a server error with its 500 instead of raising, and counting requests."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(raise_request_exception=False, **kwargs)

    def request(self, **request: Any) -> Any:
        started = time.monotonic()
        try:
            return super().request(**request)
        finally:
            _counts["requests"] = _counts.get("requests", 0) + 1
            _counts["seconds"] = _counts.get("seconds", 0) + time.monotonic() - started


class LogWatch(logging.Handler):
    """Records every log record at ERROR or above, and any record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.bad.append(f"{record.name} {record.levelname}: {record.getMessage()[:500]}")

    def check(self) -> None:
        bad, self.bad = self.bad, []
        assert not bad, f"logged: {bad}"


def last_ids() -> tuple[int, int]:
    """The last Event's and Delivery's ids, before a request."""
    from django.db.models import Max

    from deliveries.models import Delivery, Event

    return Event.objects.aggregate(last=Max("id"))["last"] or 0, Delivery.objects.aggregate(last=Max("id"))["last"] or 0


def written_since(ids: tuple[int, int]) -> tuple[int, int, int]:
    """Accepted events, rejected events and deliveries written since `last_ids()` (the fuzz tests delete nothing;
    counting new ids keeps each request's check as fast at the 100,000th request as at the first)."""
    from django.db.models import Count, Max
    from django.db.models.functions import Length

    from deliveries.models import Delivery, Event

    written = Event.objects.filter(pk__gt=ids[0]).order_by()
    events = dict(written.values_list("status").annotate(n=Count("id")))
    # SQLite keeps any length in a CharField, PostgreSQL refuses what is past max_length: hold ingest to the limits.
    limited = ("message_id", "type", "event", "user_id", "anonymous_id", "email")
    longest = written.aggregate(**{name: Max(Length(name)) for name in limited})
    for name in limited:
        assert (longest[name] or 0) <= Event._meta.get_field(name).max_length, (name, longest[name])
    deliveries = Delivery.objects.filter(pk__gt=ids[1]).count()
    return events.get(Event.Status.ACCEPTED, 0), events.get(Event.Status.REJECTED, 0), deliveries


@pytest.fixture
def fuzz_client() -> CountingClient:
    return CountingClient()


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    watch = LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _counts.get("requests"):
        terminalreporter.write_line(
            f"fuzz: {_counts['requests']:.0f} requests, {_counts['seconds']:.1f} s spent in them "
            f"({EXAMPLES or 'the default'} examples per test, {'random' if RANDOM else 'derandomized'})"
        )
