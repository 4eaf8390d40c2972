"""Management API benchmark: the events and deliveries lists over HTTP at 1 million events and 2 million deliveries.

    make bench                                   # the fifth part, after bench/admin.py
    .venv/bin/python bench/api.py --events 100000                      # a quick run at a tenth of the volume
    .venv/bin/python bench/api.py --keep                               # keep the seeded data dir ...
    .venv/bin/python bench/api.py --reuse /tmp/cdphub-bench-api-XXXX   # ... and time it again without seeding

Steps: a fresh temporary data dir (CDPHUB_DATA_DIR, SQLite in WAL mode; var/ is never touched) -> `migrate` and
the admin benchmark's seed (bench/admin.py: 4 sources, 6 destinations with encrypted credentials, events over the
last 30 days with their deliveries and the attempts of failed ones, written by executemany with the indexes
dropped and rebuilt after) -> an API token for the seed's superuser -> gunicorn as `make run` starts it (its API
throttle raised out of the way: the calls come faster than 1,200 a minute) -> each endpoint: a warm-up, then
--calls GETs one after another on a keep-alive connection, timed at the client (HTTP, gunicorn, the token, the
throttle's count, the queries, the JSON): p50, p95 and max.

Goal rows: GET /api/v1/events?user_id=... (a different user on each call, and the busiest user's first and next
page) and GET /api/v1/deliveries?status=failed (first and next page), p95 < 200 ms. The other rows show what
the other filters and one event or delivery cost. Each answer is checked: 200, a full page of the filter's rows,
the next page older than the first.

Exit status: 0 = measured (a missed goal is a result, printed as such); 1 = the hub misbehaved (an answer other
than 200, rows the filter should not give, a traceback in gunicorn's log); 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from cpu import machine_busy
from harness import BenchError, Run, percentile, print_problems, print_table, start_web

GOAL_MS = 200.0
USERS = 50  # distinct users the user_id row asks for, one per call


@dataclass
class Timing:
    label: str
    goal: bool
    runs_ms: list[float] = field(default_factory=list)
    rows: int = 0
    example: str = ""

    def p(self, q: float) -> float:
        return percentile(self.runs_ms, q)


@dataclass
class Endpoint:
    """What one row of the table asks: a URL per call (they may differ), and what every answer must hold."""

    label: str
    url: Callable[[int], str]
    goal: bool = False
    check: Callable[[dict[str, Any]], str] = lambda body: ""


@dataclass
class Bench(Run):
    session: requests.Session = field(default_factory=requests.Session)

    def seed(self) -> dict[str, Any]:
        """The admin benchmark's seed into this run's data dir (Django set up in this process for it)."""
        os.environ["CDPHUB_DATA_DIR"] = str(self.data_dir)
        import admin  # bench/admin.py: its generator and writer

        admin.setup_django(self.data_dir)
        started = time.monotonic()
        if self.args.reuse:
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            seeded = {"reused": str(self.data_dir)}
        else:
            print(f"seeding {self.args.events:,} events, ~{self.args.events * 2:,} deliveries ...", flush=True)
            result = admin.seed(self.db, self.args.events, self.args.events * 2, time.time())
            seeded = {"events": result.events, "deliveries": result.deliveries, "seconds": result.seconds}
        admin.statistics_for_planner(self.db, analyze=False)  # planned as the hub plans: no ANALYZE statistics
        seeded["seed_seconds"] = round(time.monotonic() - started, 1)
        return seeded

    def token(self) -> str:
        from django.contrib.auth.models import User
        from django.db import connection

        from integrations.models import ApiToken

        _, token = ApiToken.issue(User.objects.get(username="bench-admin"), "bench")
        connection.close()  # gunicorn's processes use the database from here on
        return token

    def endpoints(self) -> list[Endpoint]:
        """The rows: the goal's two lists (first and next pages) and the other filters, values from the seed."""
        sample = "SELECT user_id FROM deliveries_event WHERE id % 997 = 0 AND user_id != '' LIMIT ?"
        users = [row[0] for row in self.query(sample, USERS)] or ["user-000001"]
        busiest = self.query(
            "SELECT user_id FROM deliveries_event WHERE user_id != '' GROUP BY user_id ORDER BY COUNT(*) DESC LIMIT 1"
        )[0][0]
        day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
        month_ago = (datetime.now(UTC) - timedelta(days=29)).isoformat().replace("+00:00", "Z")
        event_id = self.query("SELECT event_id FROM deliveries_delivery WHERE status = 'failed' LIMIT 1")[0][0]
        delivery_id = self.query("SELECT delivery_id FROM deliveries_attempt ORDER BY id DESC LIMIT 1")[0][0]
        next_events = self.next_link(f"/api/v1/events?user_id={busiest}")
        next_failed = self.next_link("/api/v1/deliveries?status=failed")

        def is_(field_name: str, value: Any) -> Callable[[dict[str, Any]], str]:
            def check(body: dict[str, Any]) -> str:
                wrong = [row["id"] for row in body["results"] if row[field_name] != value]
                return f"rows with {field_name} other than {value!r}: {wrong[:5]}" if wrong else ""

            return check

        def within(field_name: str, since: str = "", until: str = "") -> Callable[[dict[str, Any]], str]:
            low = datetime.fromisoformat(since) if since else datetime.min.replace(tzinfo=UTC)
            high = datetime.fromisoformat(until) if until else datetime.max.replace(tzinfo=UTC)

            def check(body: dict[str, Any]) -> str:
                times = [datetime.fromisoformat(row[field_name]) for row in body["results"]]
                wrong = [t.isoformat() for t in times if not low <= t < high]
                return f"{field_name} outside the range: {wrong[:3]}" if wrong or not times else ""

            return check

        return [
            Endpoint(
                "events?user_id=<one of 50 users>",
                lambda n: f"/api/v1/events?user_id={users[n % len(users)]}",
                goal=True,
                check=lambda body: "" if body["results"] else "no rows",
            ),
            Endpoint(
                f"events?user_id={busiest} (first page)",
                lambda n: f"/api/v1/events?user_id={busiest}",
                goal=True,
                check=is_("user_id", busiest),
            ),
            Endpoint(
                f"events?user_id={busiest} (next page)",
                lambda n: next_events,
                goal=True,
                check=is_("user_id", busiest),
            ),
            Endpoint(
                "deliveries?status=failed (first page)",
                lambda n: "/api/v1/deliveries?status=failed",
                goal=True,
                check=is_("status", "failed"),
            ),
            Endpoint(
                "deliveries?status=failed (next page)",
                lambda n: next_failed,
                goal=True,
                check=is_("status", "failed"),
            ),
            Endpoint("(the API root: the token and the throttle, no rows)", lambda n: "/api/v1/"),
            Endpoint("events", lambda n: "/api/v1/events"),
            Endpoint("events?type=identify", lambda n: "/api/v1/events?type=identify", check=is_("type", "identify")),
            Endpoint("events?source=forms", lambda n: "/api/v1/events?source=forms", check=is_("source", "forms")),
            Endpoint(
                "events?status=rejected", lambda n: "/api/v1/events?status=rejected", check=is_("status", "rejected")
            ),
            Endpoint(
                "events?since=<24 h ago>",
                lambda n: f"/api/v1/events?since={day_ago}",
                check=within("received_at", day_ago),
            ),
            Endpoint(
                "events?until=<29 days ago>",
                lambda n: f"/api/v1/events?until={month_ago}",
                check=within("received_at", until=month_ago),
            ),
            Endpoint(
                "events?since=<29 days ago>&until=<24 h ago>",
                lambda n: f"/api/v1/events?since={month_ago}&until={day_ago}",
                check=within("received_at", month_ago, day_ago),
            ),
            Endpoint(
                "events?type=track&until=<24 h ago>",
                lambda n: f"/api/v1/events?type=track&until={day_ago}",
                check=is_("type", "track"),
            ),
            Endpoint("events/<id> (with its trace)", lambda n: f"/api/v1/events/{event_id}"),
            Endpoint("deliveries", lambda n: "/api/v1/deliveries"),
            Endpoint(
                "deliveries?destination=welcome-journey", lambda n: "/api/v1/deliveries?destination=welcome-journey"
            ),
            Endpoint(
                "deliveries?destination=segment&status=failed",
                lambda n: "/api/v1/deliveries?destination=segment&status=failed",
                check=is_("status", "failed"),
            ),
            Endpoint(
                "deliveries?destination=warehouse&since=<29 days ago>",
                lambda n: f"/api/v1/deliveries?destination=warehouse&since={month_ago}",
                check=within("created_at", month_ago),
            ),
            Endpoint(
                "deliveries?until=<24 h ago>",
                lambda n: f"/api/v1/deliveries?until={day_ago}",
                check=within("created_at", until=day_ago),
            ),
            Endpoint(
                "deliveries?error_code=timeout",
                lambda n: "/api/v1/deliveries?error_code=timeout",
                check=is_("error_code", "timeout"),
            ),
            Endpoint("deliveries/<id> (with its attempts)", lambda n: f"/api/v1/deliveries/{delivery_id}"),
        ]

    def next_link(self, url: str) -> str:
        response = self.session.get(self.web_url + url, timeout=60)
        if response.status_code != 200:
            raise BenchError(f"GET {url} answered {response.status_code}: {response.text[:300]}")
        following = response.json()["next"]
        if not following:
            raise BenchError(f"GET {url} has no next page: the seed is too small")
        return following.removeprefix(self.web_url)

    def time(self, endpoint: Endpoint, calls: int, warmup: int) -> Timing:
        timing = Timing(endpoint.label, endpoint.goal, example=endpoint.url(0))
        for n in range(warmup + calls):
            url = endpoint.url(n)
            started = time.perf_counter()
            response = self.session.get(self.web_url + url, timeout=60)
            body = response.content
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                self.problems.append(f"GET {url}: {response.status_code} {body[:300]!r}")
                return timing
            data = json.loads(body)
            problem = endpoint.check(data)
            if problem:
                self.problems.append(f"GET {url}: {problem}")
            if n >= warmup:
                timing.runs_ms.append(elapsed)
                timing.rows = len(data["results"]) if "results" in data else 1
        return timing


def report(bench: Bench, timings: list[Timing]) -> None:
    rows = []
    for t in timings:
        mark = ("met" if t.p(0.95) < GOAL_MS else "MISSED") if t.goal else ""
        rows.append(
            [t.label, str(t.rows), f"{t.p(0.5):.1f}", f"{t.p(0.95):.1f}", f"{max(t.runs_ms, default=0):.1f}", mark]
        )
    header = ["GET /api/v1/...", "rows", "p50 ms", "p95 ms", "max ms", f"goal p95 < {GOAL_MS:.0f} ms"]
    print_table(
        f"{bench.args.calls} calls each (after {bench.args.warmup} warm-up), one at a time", header, rows, {1, 2, 3, 4}
    )
    missed = [t.label for t in timings if t.goal and not t.p(0.95) < GOAL_MS]
    print("goal met: every goal row's p95 under 200 ms" if not missed else f"goal MISSED by: {', '.join(missed)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to seed, with twice as many deliveries")
    p.add_argument("--calls", type=int, default=50, help="timed calls per endpoint (50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (3)")
    p.add_argument("--reuse", type=Path, help="a data dir kept by --keep: time it again without seeding")
    p.add_argument("--keep", action="store_true", help="keep the data dir (the SQLite file and gunicorn.log)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = args.reuse.resolve() if args.reuse else Path(tempfile.mkdtemp(prefix="cdphub-bench-api-"))
    bench = Bench(args, data_dir)
    web = None
    code = 0
    timings: list[Timing] = []
    try:
        bench.results["seed"] = bench.seed()
        token = bench.token()
        bench.session.headers["Authorization"] = f"Bearer {token}"
        env = {**bench.env, "CDPHUB_API_THROTTLE": "1000000/min"}
        web = start_web(data_dir, env, bench.web_url)
        print(f"machine load before timing: {machine_busy():.2f} of {os.cpu_count()} cores busy", flush=True)
        for endpoint in bench.endpoints():
            timing = bench.time(endpoint, args.calls, args.warmup)
            timings.append(timing)
            print(f"  {timing.label:<50} p50 {timing.p(0.5):7.1f} ms  p95 {timing.p(0.95):7.1f} ms", flush=True)
    except BenchError as exc:
        print(f"!! the benchmark could not run: {exc}", file=sys.stderr)
        code = 2
    except Exception:
        traceback.print_exc()
        code = 2
    finally:
        if web is not None:
            web.stop()
            if "Traceback" in web.output():
                bench.problems.append(f"gunicorn logged a traceback:\n{web.tail(40)}")
        if args.keep or args.reuse or code:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    if timings:
        report(bench, timings)
    print_problems("the hub misbehaved", bench.problems, "every answer was a 200 with the rows its filter asks for")
    if bench.problems:
        code = max(code, 1)
    bench.results["endpoints"] = [
        {
            "label": t.label,
            "example": t.example,
            "goal": t.goal,
            "rows": t.rows,
            "p50_ms": t.p(0.5),
            "p95_ms": t.p(0.95),
            "max_ms": max(t.runs_ms, default=None),
        }
        for t in timings
    ]
    if args.json:
        args.json.write_text(json.dumps({"results": bench.results, "problems": bench.problems}, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
