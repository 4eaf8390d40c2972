"""Long-window benchmark: Event Delivery over 7 and 14 days, the all-destinations page and the dashboard, timed
against 10 million deliveries in SQLite, where those windows read the hourly rollups.

    make bench                                   # runs every benchmark, this one last
    .venv/bin/python bench/rollups.py --deliveries 1000000     # a quick run
    .venv/bin/python bench/rollups.py --reseed --json /tmp/rollups.json

Steps: a data dir of its own (default var/bench-rollups; the hub's var/cdphub.sqlite3 is never touched) -> when
the seeded database there does not match the scale asked for (or --reseed): a fresh database, `migrate`, one
source and 4 webhook destinations (the busiest gets every event, the others some), then the events and their
deliveries written by SQL alone (a recursive CTE for the events, one INSERT … SELECT for the deliveries, indexes
dropped first and rebuilt after), spread over the last 15 days, ~5% failed with 3 errors, ~7% filtered, a few
pending and retrying in the last hour -> the rollups rebuilt by deliveries.engine.rollups.rebuild() (the hub's
own code, timed: minutes from the deliveries, hours from the minutes) -> each page timed with django.test.Client
in this process as a superuser: one warm-up, then --runs GETs (median and max), and one more run with the queries
captured -> the 7 and 14 day figures (delivered, failed, p50, p95, every chart bucket) computed from the hours and
from the minutes alone, which must agree -> the minutes older than 3 days deleted (as retention does; rolled
back after) and the 7 and 14 day pages timed and compared again.

A seed is reused for --max-age hours (6) and not topped up: its newest rows are as old as the seed, so the windows
hold that much less (the 7 and 14 day ones read nearly the same number of hours).

Budget: every page's median under 100 ms. Exit status: 0 = measured, every page within budget and the figures
agree; 1 = the hub misbehaved (a page over budget, an error, figures that disagree); 2 = the benchmark could not
run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from admin import (
    Page,
    Timing,
    close_raw,
    db_size,
    indexes_of,
    print_slowest_queries,
    raw_connection,
    read_marker,
    setup_django,
    write_marker,
)
from cpu import machine_busy
from harness import ROOT, BenchError, print_problems, print_table

DEFAULT_DATA_DIR = ROOT / "var" / "bench-rollups"
SEED_VERSION = 1  # bump when the generated data changes shape
BUDGET_MS = 100.0
DAYS = 15  # a day more than the longest window, so its first hour is cut as in real life
MARKER = "bench_rollups_seed"
UNIX_EPOCH_JULIAN = 2440587.5
# slug, share of the events it gets (per mille), extra failures (per mille)
DESTINATIONS = [("warehouse", 1000, 0), ("welcome-journey", 450, 30), ("crm", 350, 0), ("segment", 200, 100)]
ERRORS = [
    ("http_500", "The server answered 500 Internal Server Error.", "The receiving server failed: check its logs."),
    ("timeout", "No answer within 10 s.", "The receiver is slow or down: check it, or raise the timeout."),
    ("http_422", "The server refused the event (422): field 'email' is required.", "Map an email for every event."),
]


# ---------------------------------------------------------------------------------------------- the seed


def julian(ts: float) -> float:
    return ts / 86400 + UNIX_EPOCH_JULIAN


def columns_with_defaults(model: Any, given: dict[str, str]) -> tuple[str, str, list[Any]]:
    """The INSERT's column list and SELECT list: the `given` SQL expressions, and every other column's default as a
    parameter (fields other work adds to these tables get their defaults)."""
    from django.db import connection

    names, expressions, params = [], [], []
    for f in model._meta.concrete_fields:
        names.append(f.column)
        if f.column in given:
            expressions.append(given[f.column])
        else:
            expressions.append("?")
            params.append(f.get_db_prep_save(f.get_default(), connection))
    return ", ".join(names), ", ".join(expressions), params


def insert_events(conn: sqlite3.Connection, source_id: int, events: int, start: float, end: float) -> None:
    from deliveries.models import Event

    step = (julian(end) - julian(start)) / events
    given = {
        "id": "i",
        "source_id": str(int(source_id)),
        "message_id": "'m-' || i",
        "type": "'track'",
        "event": "'Order Completed'",
        "user_id": "'user-' || (i % 120000)",
        "anonymous_id": "'anon-' || (i % 120000)",
        "payload": """'{"type": "track", "event": "Order Completed", "userId": "user-' || (i % 120000) || '"}'""",
        "received_at": f"strftime('%Y-%m-%d %H:%M:%f', {julian(start)!r} + (i - 1) * {step!r})",
        "timestamp": f"strftime('%Y-%m-%d %H:%M:%f', {julian(start)!r} + (i - 1) * {step!r})",
        "status": "'accepted'",
    }
    columns, select, params = columns_with_defaults(Event, given)
    conn.execute(
        f"INSERT INTO {Event._meta.db_table} ({columns}) "
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(events)}) "
        f"SELECT {select} FROM n",
        params,
    )


def insert_deliveries(conn: sqlite3.Connection, shares: list[tuple[int, int, int]], events: int, span: float) -> None:
    """Each event's deliveries: a destination takes an event when a hash of the two is under its share; another
    hash picks the outcome, the error and the latency."""
    from deliveries.models import Delivery

    conn.execute("CREATE TEMP TABLE bench_share (id INTEGER PRIMARY KEY, share INTEGER, fail INTEGER)")
    conn.executemany("INSERT INTO bench_share VALUES (?, ?, ?)", shares)
    conn.execute("CREATE TEMP TABLE bench_error (i INTEGER PRIMARY KEY, code TEXT, message TEXT, hint TEXT)")
    conn.executemany("INSERT INTO bench_error VALUES (?, ?, ?, ?)", [(i, *e) for i, e in enumerate(ERRORS)])
    last_hour = int(events - events * 3600 / span)  # events after this id were received in the last hour
    last_minutes = int(events - events * 600 / span)
    pairs = (
        "SELECT e.id AS event_id, e.received_at AS received, s.id AS destination_id, s.fail AS fail, "
        "(e.id * 2654435761 + s.id * 40503) % 1000 AS r, "
        "20 + (e.id * 7919) % 400 AS latency, "  # 20-420 ms, and now and then minutes (a retry went through)
        "CASE (e.id % 5) WHEN 0 THEN 1 WHEN 1 THEN 2 ELSE 0 END AS error "  # the commonest error first
        "FROM deliveries_event e JOIN bench_share s ON s.share > (e.id * 104729 + s.id * 7) % 1000"
    )
    outcomes = (
        f"SELECT p.*, CASE WHEN event_id > {last_minutes} AND r < 5 THEN 'pending' "
        f"WHEN event_id > {last_hour} AND r < 15 THEN 'retrying' WHEN r < 50 + fail THEN 'failed' "
        f"WHEN r >= 930 THEN 'filtered' ELSE 'delivered' END AS status, "
        f"latency + CASE WHEN r BETWEEN 900 AND 905 THEN (event_id * 31) % 600000 ELSE 0 END AS latency_ms "
        f"FROM ({pairs}) p"
    )
    at = "strftime('%Y-%m-%d %H:%M:%f', julianday(received) + {} / 86400000.0)"
    retry_at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 300))
    failing = "status IN ('failed', 'retrying')"
    given = {
        "id": "NULL",
        "event_id": "event_id",
        "destination_id": "destination_id",
        "status": "status",
        "attempts": "CASE status WHEN 'delivered' THEN 1 WHEN 'failed' THEN 3 WHEN 'retrying' THEN 2 ELSE 0 END",
        "next_attempt_at": f"CASE status WHEN 'retrying' THEN '{retry_at}' WHEN 'pending' THEN received END",
        "error_code": f"CASE WHEN {failing} THEN x.code WHEN status = 'filtered' THEN 'filtered' ELSE '' END",
        "error_message": f"CASE WHEN {failing} THEN x.message "
        "WHEN status = 'filtered' THEN 'The filter lets through identify only, not track.' ELSE '' END",
        "hint": f"CASE WHEN {failing} THEN x.hint ELSE '' END",
        "delivered_at": f"CASE status WHEN 'delivered' THEN {at.format('latency_ms')} END",
        "latency_ms": "CASE status WHEN 'delivered' THEN latency_ms END",
        "is_test": "0",
        "created_at": "received",
        "updated_at": f"CASE status WHEN 'delivered' THEN {at.format('latency_ms')} "
        f"WHEN 'failed' THEN {at.format(2000)} ELSE received END",
    }
    columns, select, params = columns_with_defaults(Delivery, given)
    conn.execute(
        f"INSERT INTO {Delivery._meta.db_table} ({columns}) SELECT {select} "
        f"FROM ({outcomes}) JOIN bench_error x ON x.i = error",
        params,
    )


@dataclass
class Seed:
    events: int
    deliveries: int
    seeded_at: float
    seconds: dict[str, float]
    rollup_rows: int = 0
    reused: bool = False


def create_workspace() -> tuple[int, list[tuple[int, int, int]]]:
    """One source, the destinations (id, share, extra failures) and the superuser, by the ORM."""
    from django.contrib.auth.models import User

    from integrations.models import Destination, Source

    source = Source.objects.create(slug="website", name="Website", kind="http")
    shares = []
    for slug, share, fail in DESTINATIONS:
        destination = Destination.objects.create(
            slug=slug,
            name=slug.replace("-", " ").capitalize(),
            vendor="webhook",
            config={"url": f"https://{slug}.example.com/events"},
        )
        destination.sources.set([source])
        shares.append((destination.pk, share, fail))
    User.objects.create_superuser("bench-admin", "admin@example.com", None)
    return source.pk, shares


def seed(db: Path, deliveries: int, now: float) -> Seed:
    """A fresh database with about `deliveries` deliveries over the last DAYS days, by SQL."""
    from django.core.management import call_command
    from django.db import connection

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    t = time.monotonic()
    connection.close()
    call_command("migrate", verbosity=0, interactive=False)
    source_id, shares = create_workspace()
    seconds["migrate + workspace"] = time.monotonic() - t
    events = round(deliveries * 1000 / sum(share for _, share, _ in shares))
    span = DAYS * 86400
    conn = raw_connection(db)
    tables = ("deliveries_event", "deliveries_delivery")
    indexes = indexes_of(conn, tables)
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    t = time.monotonic()
    insert_events(conn, source_id, events, now - span, now - 30)
    seconds["insert events"] = time.monotonic() - t
    print(f"  {events:,} events in {seconds['insert events']:.0f} s; deliveries ...", flush=True)
    t = time.monotonic()
    insert_deliveries(conn, shares, events, span)
    conn.execute("COMMIT")
    seconds["insert deliveries"] = time.monotonic() - t
    written = conn.execute("SELECT MAX(id) FROM deliveries_delivery").fetchone()[0]
    print(f"  {written:,} deliveries in {seconds['insert deliveries']:.0f} s; indexes ...", flush=True)
    t = time.monotonic()
    for _, sql in indexes:
        conn.execute(sql)
    seconds["build indexes"] = time.monotonic() - t
    close_raw(conn)
    return Seed(events=events, deliveries=written, seeded_at=now, seconds=seconds)


def prepare(args: argparse.Namespace, db: Path) -> Seed:
    from django.core.management import call_command

    now = time.time()
    info = read_marker(db, MARKER)
    wanted = {"version": SEED_VERSION, "deliveries": args.deliveries}
    fresh = info is not None and now - info["seeded_at"] < args.max_age * 3600
    if not args.reseed and fresh and {k: info.get(k) for k in wanted} == wanted:
        print(f"reusing {db} (seeded {(now - info['seeded_at']) / 3600:.1f} h ago) ...", flush=True)
        call_command("migrate", verbosity=0, interactive=False)
        seeded = Seed(info["events"], info["rows"], info["seeded_at"], info["seconds"], info["rollup_rows"], True)
        return seeded
    print(f"seeding {db}: ~{args.deliveries:,} deliveries over {DAYS} days ...", flush=True)
    started = time.monotonic()
    result = seed(db, args.deliveries, now)
    from deliveries.engine import rollups

    t = time.monotonic()
    result.rollup_rows = rollups.rebuild()
    result.seconds["rollups.rebuild()"] = time.monotonic() - t
    print(f"  {result.rollup_rows:,} rollup rows in {result.seconds['rollups.rebuild()']:.0f} s", flush=True)
    result.seconds["total"] = time.monotonic() - started
    info = {**wanted, "seeded_at": now, "events": result.events, "rows": result.deliveries}
    write_marker(db, {**info, "seconds": result.seconds, "rollup_rows": result.rollup_rows}, MARKER)
    return result


# ---------------------------------------------------------------------------------------------- pages and figures


def pages() -> list[Page]:
    from django.urls import reverse

    from deliveries.models import Delivery
    from integrations.models import Destination

    busiest = Destination.objects.get(slug="warehouse")
    issue = (
        Delivery.objects.filter(destination=busiest, status="failed")
        .order_by("-id")
        .values("error_code", "error_message")
        .first()
    ) or {"error_code": "", "error_message": ""}
    page = reverse("admin:deliveries_delivery_event_delivery", args=[busiest.pk])
    index = reverse("admin:deliveries_delivery_event_delivery_index")
    samples = reverse("admin:deliveries_delivery_event_delivery_samples", args=[busiest.pk])
    out = [Page(f"Event Delivery busiest ?window={w}", f"{page}?window={w}") for w in ("24h", "7d", "14d")]
    out += [Page(f"Event Delivery index ?window={w}", f"{index}?window={w}") for w in ("24h", "7d", "14d")]
    out += [
        Page(f"admin index (dashboard) ?window={w}", f"{reverse('admin:index')}?window={w}")
        for w in ("today", "7d", "14d")
    ]
    query = f"window=14d&code={issue['error_code']}&message={issue['error_message']}"
    out.append(Page("Event Delivery samples (14 d, commonest error)", f"{samples}?{query.replace(' ', '+')}"))
    return out


def figures(window: str, now: Any, hours: bool = True) -> tuple[dict[int, tuple], float]:
    """Per destination: delivered, failed, p50, p95 and the chart's delivered/failed/p95 per bucket, summed from the
    hours (or the minutes); and how long that took in ms."""
    from deliveries.pages.event_delivery.numbers import WINDOWS, chart_data, rollup_buckets, summarise
    from integrations.models import Destination

    ids = list(Destination.objects.values_list("id", flat=True))
    t = time.perf_counter()
    buckets = rollup_buckets(ids, WINDOWS[window], now, hours=hours)
    ms = (time.perf_counter() - t) * 1000
    out = {}
    for d, rows in buckets.items():
        summary, chart = summarise(rows), chart_data(rows, WINDOWS[window])
        out[d] = (
            summary.delivered,
            summary.failed,
            summary.p50,
            summary.p95,
            chart["delivered"],
            chart["failed"],
            chart["p95"],
        )
    return out, ms


@dataclass
class PageTiming(Timing):
    cpu_ms: list[float] = field(default_factory=list)  # this process's CPU per request: steadier on a busy machine

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_ms) if self.cpu_ms else float("nan")


def time_page(client: Any, page: Page, runs: int) -> PageTiming:
    """One warm-up, `runs` timed GETs (wall clock and this process's CPU: the view, SQLite and the template all
    run here), then one more with the queries captured."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timing = PageTiming(page, "superuser")

    def fetch() -> None:
        response = client.get(page.url)
        if response.status_code != 200:
            timing.error = f"HTTP {response.status_code}: {response.content[:200]!r}"

    try:
        fetch()
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            fetch()
            timing.runs_ms.append((time.perf_counter() - wall) * 1000)
            timing.cpu_ms.append((time.process_time() - cpu) * 1000)
        with CaptureQueriesContext(connection) as captured:
            fetch()
        timing.queries = list(captured.captured_queries)
    except Exception:
        timing.error = traceback.format_exc(limit=6).strip().splitlines()[-1]
    return timing


@dataclass
class Agreement:
    window: str
    hours_ms: float
    minutes_ms: float
    agree: bool  # the hours give the minutes' figures
    purged_ms: float = 0.0
    purged_agree: bool = False  # and still do once the minutes older than 3 days are deleted


def compare(window: str) -> Agreement:
    from django.db import transaction
    from django.utils import timezone

    from deliveries.models import DeliveryRollup

    now = timezone.now()
    hours, hours_ms = figures(window, now)
    minutes, minutes_ms = figures(window, now, hours=False)
    result = Agreement(window, hours_ms, minutes_ms, hours == minutes)
    with transaction.atomic():
        DeliveryRollup.objects.filter(minute__lt=now - timedelta(days=3)).delete()  # as retention does
        purged, result.purged_ms = figures(window, now)
        result.purged_agree = purged == hours
        transaction.set_rollback(True)
    return result


# ---------------------------------------------------------------------------------------------- report and main


def report(
    args: argparse.Namespace, seeded: Seed, timings: list[PageTiming], agreements: list[Agreement], db: Path
) -> list[str]:
    problems: list[str] = []
    rows = []
    for t in timings:
        slowest = max((float(q["time"]) for q in t.queries), default=0.0) * 1000
        verdict = "ok"
        if t.error:
            verdict = "ERROR"
            problems.append(f"{t.page.label}: {t.error}")
        elif t.median > args.budget:
            verdict = "SLOW"
            problems.append(f"{t.page.label}: median {t.median:,.0f} ms > {args.budget:.0f} ms")
        runs = bool(t.runs_ms)
        median, most = (f"{t.median:,.0f} ms", f"{max(t.runs_ms):,.0f} ms") if runs else ("-", "-")
        cpu = f"{t.cpu:,.0f} ms" if runs else "-"
        rows.append((t.page.label, median, most, cpu, str(len(t.queries)), f"{slowest:,.0f} ms", verdict))
    title = (
        f"cdphub long-window benchmark  ({seeded.events:,} events, {seeded.deliveries:,} deliveries over {DAYS} "
        f"days, SQLite WAL, django.test.Client in-process, {args.runs} runs after 1 warm-up, budget median < "
        f"{args.budget:.0f} ms)"
    )
    header = ("page", "median", "max", "CPU median", "queries", "slowest query", "verdict")
    print_table(title, header, rows, right=range(1, 6))
    print()
    rows = []
    for a in agreements:
        if not a.agree:
            problems.append(f"{a.window}: the hourly and the minute figures disagree")
        if not a.purged_agree:
            problems.append(f"{a.window}: the figures changed when the minutes older than 3 days were deleted")
        rows.append(
            (
                a.window,
                f"{a.hours_ms:,.0f} ms",
                f"{a.minutes_ms:,.0f} ms",
                "yes" if a.agree else "NO",
                f"{a.purged_ms:,.0f} ms",
                "yes" if a.purged_agree else "NO",
            )
        )
    header = ("window", "from hours", "from minutes", "same figures", "minutes > 3 d deleted", "same figures")
    print_table(
        "every destination's numbers and chart (7 and 14 days): from the hours and from the minutes",
        header,
        rows,
        right=(1, 2, 4),
    )
    print()
    seconds = "; ".join(f"{k} {v:.1f} s" for k, v in seeded.seconds.items())
    state = "reused" if seeded.reused else "seeded"
    print(f"database: {db} ({state}), {db_size(db) / 1e9:.2f} GB, {seeded.rollup_rows:,} rollup rows; {seconds}")
    print_slowest_queries(timings, args.budget, args.explain, 3, lambda t: t.page.label)
    print()
    fine = f"Every page answered 200 with a median under {args.budget:.0f} ms; hours and minutes agree."
    print_problems("OVER BUDGET, BROKEN OR DISAGREEING", problems, fine)
    return problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=10_000_000, help="deliveries to seed (10,000,000)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"(default {DEFAULT_DATA_DIR})")
    p.add_argument("--reseed", action="store_true", help="seed again even when the stored seed matches")
    p.add_argument("--max-age", type=float, default=6, help="hours a seed is reused (6)")
    p.add_argument("--runs", type=int, default=7, help="timed runs per page after one warm-up (7)")
    p.add_argument("--budget", type=float, default=BUDGET_MS, help="median budget per page in ms (100)")
    p.add_argument("--explain", action="store_true", help="query plans of every page, not only of slow ones")
    p.add_argument("--only", action="append", default=[], help="only pages whose label contains this (repeatable)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        setup_django(args.data_dir.resolve())
        from django.conf import settings

        db = Path(settings.DATABASES["default"]["NAME"])
        seeded = prepare(args, db)
        with sqlite3.connect(db) as conn:  # no planner statistics, as the hub runs
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
                conn.execute("DELETE FROM sqlite_stat1")
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("ERROR: the seed failed", file=sys.stderr)
        return 2

    from django.contrib.auth.models import User
    from django.test import Client

    load = machine_busy()
    print(f"machine load before timing: {load:.2f} of {os.cpu_count()} cores busy", flush=True)
    if load > 0.3:
        print("!! other processes are using the CPU: the timings are high; rerun on a quiet machine")
    client = Client(SERVER_NAME="localhost")
    client.force_login(User.objects.get(username="bench-admin"))
    timings = []
    for page in [p for p in pages() if not args.only or any(o in p.label for o in args.only)]:
        timing = time_page(client, page, args.runs)
        timings.append(timing)
        print(f"  {page.label:<52} {f'{timing.median:,.0f} ms' if timing.runs_ms else timing.error}", flush=True)
    print("comparing the hourly and the minute figures ...", flush=True)
    agreements = [compare(window) for window in ("7d", "14d")]
    problems = report(args, seeded, timings, agreements, db)
    print(f"total time {time.monotonic() - started:.0f} s")
    if args.json:
        results = {
            "events": seeded.events,
            "deliveries": seeded.deliveries,
            "database_bytes": db_size(db),
            "seed_seconds": seeded.seconds,
            "rollup_rows": seeded.rollup_rows,
            "pages": [
                {
                    "page": t.page.label,
                    "url": t.page.url,
                    "median_ms": t.median if t.runs_ms else None,
                    "max_ms": max(t.runs_ms) if t.runs_ms else None,
                    "runs_ms": t.runs_ms,
                    "cpu_ms": t.cpu_ms,
                    "error": t.error,
                }
                for t in timings
            ],
            "figures": [a.__dict__ for a in agreements],
            "problems": problems,
        }
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
