"""Fault benchmark: issue 14's long fault run on PostgreSQL + Redis (and, with --sqlite, on SQLite), with figures.

    make bench                                  # runs this among the others
    .venv/bin/python bench/faults.py            # about 4 minutes: 20,000 events at 150/s
    .venv/bin/python bench/faults.py --sqlite --events 5000 --json /tmp/faults.json

The run is tests/faults.py's, the one tests/e2e/test_faults.py runs bounded in `make test`: gunicorn (2 workers)
and 2 `manage.py worker` processes against a fresh database (cdphub_faults_<pid>, dropped afterwards), a webhook
destination posting to a local receiver that counts what it gets by messageId, 20,000 events offered at a steady
rate through /v1/batch and /v1/track, and meanwhile: a worker killed with -9 every 10 s (a new one started), a
gunicorn worker killed with -9, `pg_ctl restart -m fast` in the middle, Redis restarted (nosave), the receiver
down for 60 s and answering 30% of its requests with 500/502/503/429.

PostgreSQL and Redis come from tests/services.sh: when this is not run under it, it runs itself under it.

Printed: events offered and answered 2xx, requests refused with 503 (while the database restarted), 500s (must be
0), events stored and delivered, duplicates at the receiver (allowed: delivery is at least once), deliveries left
in flight, the duration, and the timeline of faults. Exit status: 0 = measured and every promise kept; 1 = a
promise broken (an event answered 2xx lost or not stored, a messageId twice in the success log, a 500, a delivery
stuck); 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.faults import FULL, FULL_SQLITE, FaultRun, Plan, Report, Services  # noqa: E402
from tests.receiver import Receiver  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=FULL.events)
    parser.add_argument("--rate", type=float, default=FULL.rate, help="events offered per second")
    parser.add_argument("--receiver-down", type=float, default=FULL.receiver_down_for, help="seconds")
    parser.add_argument("--sqlite", action="store_true", help="also the SQLite run (one web, one worker process)")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and databases")
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args(argv)


def under_services(argv: list[str]) -> None:
    """Run this script again under tests/services.sh (PostgreSQL + Redis on loopback) unless it already is."""
    if os.environ.get("CDPHUB_TEST_REDISPORT") and os.environ.get("CDPHUB_DATABASE_URL", "").startswith("postgres"):
        return
    os.execvp("bash", ["bash", str(ROOT / "tests" / "services.sh"), sys.executable, str(Path(__file__)), *argv])


def plan_from(base: Plan, args: argparse.Namespace) -> Plan:
    return dataclasses.replace(base, events=args.events, rate=args.rate, receiver_down_for=args.receiver_down)


def postgres_run(args: argparse.Namespace) -> Report:
    base_url = os.environ["CDPHUB_DATABASE_URL"]
    name = f"cdphub_faults_{os.getpid()}"
    server, _, _ = base_url.rpartition("/")
    maintenance = server.replace("postgres://", "postgresql://", 1) + "/postgres"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    data_dir = Path(tempfile.mkdtemp(prefix="cdphub-bench-faults-pg-"))
    try:
        with Receiver() as receiver:
            run = FaultRun(
                plan_from(FULL, args),
                f"{server}/{name}",
                os.environ["CDPHUB_BROKER"],
                data_dir,
                receiver,
                services=Services.from_env(),
                migrate=True,
            )
            return run.execute()
    finally:
        if args.keep:
            print(f"kept: {data_dir}, database {name}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sqlite_run(args: argparse.Namespace) -> Report:
    data_dir = Path(tempfile.mkdtemp(prefix="cdphub-bench-faults-sqlite-"))
    try:
        with Receiver() as receiver:
            url = f"sqlite:///{data_dir / 'cdphub.sqlite3'}"
            return FaultRun(plan_from(FULL_SQLITE, args), url, "", data_dir, receiver, migrate=True).execute()
    finally:
        if args.keep:
            print(f"kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


FIGURES = (
    ("events offered", "events_offered"),
    ("events answered 2xx", "events_acknowledged_2xx"),
    ("requests refused 503 (Retry-After)", "refused_503"),
    ("requests answered 500", "answered_500"),
    ("requests unanswered (web worker killed)", "unanswered_requests"),
    ("events stored", "events_stored"),
    ("deliveries delivered", "delivered"),
    ("requests at the receiver", "receiver_requests"),
    ("duplicates at the receiver", "duplicates_at_receiver"),
    ("max in_flight left", "max_in_flight_left"),
    ("offering (s)", "offer_seconds"),
    ("duration (s)", "duration_s"),
    ("tracebacks in the logs", "tracebacks_in_logs"),
)


def print_report(title: str, report: Report) -> None:
    print()
    print(title)
    print("-" * len(title))
    for label, key in FIGURES:
        print(f"  {label:<42} {report.figures.get(key, '-')}")
    print("  timeline:")
    for entry in report.timeline:
        print(f"    {entry}")
    for problem in report.problems:
        print(f"!! {problem}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    under_services(argv)
    results: dict[str, dict] = {}
    code = 0
    runs = [("PostgreSQL + Redis, 2 web + 2 worker processes", "postgres", postgres_run)]
    if args.sqlite:
        runs.append(("SQLite + database broker, 1 web + 1 worker process", "sqlite", sqlite_run))
    for title, key, run in runs:
        print(f"== {title}: {args.events:,} events at {args.rate:g}/s ...", flush=True)
        try:
            report = run(args)
        except Exception as exc:  # the benchmark could not run: a process did not start, a service is missing
            print(f"!! the benchmark could not run: {exc}", file=sys.stderr)
            return 2
        print_report(f"cdphub fault run: {title} ({os.cpu_count()} cores)", report)
        results[key] = {"figures": report.figures, "timeline": report.timeline, "problems": report.problems}
        if report.problems:
            code = 1
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
