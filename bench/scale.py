"""Scale benchmark: ingest and delivery on PostgreSQL + Redis with 1 and 2 `manage.py worker` processes. Does the
delivery rate grow with the workers?

    make bench                                   # runs this among the others
    .venv/bin/python bench/scale.py --events 20000 --destinations 1 --destinations 4 --json /tmp/scale.json

For each number of destinations and each number of worker processes (1, then 2), on a fresh database
(cdphub_scale_<pid>_<n>, dropped afterwards) and a fresh data dir:

  1. import a source and the destinations (`webhook`, one event per call, rate limit out of the way), all
     posting to bench/receiver.py (asyncio, keep-alive, answers 200 at once), and start gunicorn as `make run`
     serves it (2 gthread workers);
  2. ingest   --events track events through POST /v1/batch (100 a request) from 4 keep-alive client threads,
              no worker running                                                          -> events/s
  3. deliver  start the worker processes (each with CDPHUB_WORKERS delivery processes, 4 as in `make run`)
              and wait until the receiver has every delivery                          -> deliveries/s

Checks: every delivery arrives exactly once and ends `delivered`. PostgreSQL and Redis come from
tests/services.sh: when this is not run under it, it runs itself under it. Exit status: 0 measured, 1 the hub
misbehaved (lost or duplicated deliveries, ingest errors), 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import psycopg
import requests
from harness import BenchError, Child, free_port, manage, print_table, start_web, track_event, venv_bin

ROOT = Path(__file__).resolve().parent.parent
RECEIVER = Path(__file__).resolve().parent / "receiver.py"
WRITE_KEY = "wk_bench_scale"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
BATCH = 100
CLIENTS = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--destinations", type=int, action="append", help="repeatable (default: 1 and 4)")
    parser.add_argument("--workers", type=int, action="append", help="worker processes, repeatable (default 1, 2)")
    parser.add_argument("--stall", type=float, default=60.0, help="give up when no delivery arrives for this long")
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def under_services(argv: list[str]) -> None:
    if os.environ.get("CDPHUB_TEST_REDISPORT") and os.environ.get("CDPHUB_DATABASE_URL", "").startswith("postgres"):
        return
    os.execvp("bash", ["bash", str(ROOT / "tests" / "services.sh"), sys.executable, str(Path(__file__)), *argv])


class Hub:
    """One measured configuration: a database, a data dir, the receiver, gunicorn and the workers."""

    def __init__(self, name: str, destinations: int) -> None:
        self.server = os.environ["CDPHUB_DATABASE_URL"].rpartition("/")[0]
        self.maintenance = self.server.replace("postgres://", "postgresql://", 1) + "/postgres"
        self.database = name
        self.destinations = destinations
        self.data_dir = Path(tempfile.mkdtemp(prefix="cdphub-bench-scale-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.children: list[Child] = []
        self.receiver_url = ""

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "CDPHUB_Q_SYNC")}
        env.update(
            CDPHUB_DATA_DIR=str(self.data_dir),
            CDPHUB_BIND=f"127.0.0.1:{self.port}",
            CDPHUB_DATABASE_URL=f"{self.server}/{self.database}",
            CDPHUB_ALLOW_PRIVATE_URLS="1",
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def rows(self, sql: str) -> list[tuple]:
        url = f"{self.server}/{self.database}".replace("postgres://", "postgresql://", 1)
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()

    def __enter__(self) -> Hub:
        with psycopg.connect(self.maintenance, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")
        receiver = Child("receiver", [venv_bin("python"), str(RECEIVER)], self.env, self.data_dir / "receiver.log")
        self.children.append(receiver)
        receiver.start()
        receiver.wait_for(lambda: "READY" in receiver.output(), "no READY line")
        self.receiver_url = f"http://127.0.0.1:{int(receiver.output().split('READY', 1)[1].split()[0])}"
        manage(self.env, "migrate", "--noinput", "-v0")
        destinations = [
            {
                "slug": f"hook-{n}",
                "name": f"Hook {n}",
                "vendor": "webhook",
                "sources": ["bench"],
                "config": {"url": f"{self.receiver_url}/hook/{n}"},
                "rate_limit": 1_000_000,  # the vendor default (100 requests/s) would be the result otherwise
                "rate_period": 1,
            }
            for n in range(self.destinations)
        ]
        workspace = {
            "sources": [{"slug": "bench", "name": "Bench", "kind": "http", "write_key": WRITE_KEY}],
            "destinations": destinations,
        }
        path = self.data_dir / "workspace.json"
        path.write_text(json.dumps(workspace))
        manage(self.env, "import_workspace", str(path))
        self.children.append(start_web(self.data_dir, self.env, self.url))
        return self

    def __exit__(self, *exc: object) -> None:
        for child in reversed(self.children):
            child.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with psycopg.connect(self.maintenance, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def received(self) -> int:
        return requests.get(self.receiver_url + "/_control/count", timeout=5).json()["count"]

    def ingest(self, events: int, run_id: str) -> float:
        """POST the events in batches from CLIENTS keep-alive threads; events/s."""
        bodies = [
            orjson.dumps(
                {"batch": [track_event(i, messageId=f"{run_id}-{i}") for i in range(s, min(events, s + BATCH))]}
            )
            for s in range(0, events, BATCH)
        ]
        errors: Counter[int] = Counter()
        lock = threading.Lock()
        next_body = iter(range(len(bodies)))

        def client() -> None:
            session = requests.Session()
            headers = {"Content-Type": "application/json", "Authorization": AUTH}
            while True:
                with lock:
                    i = next(next_body, None)
                if i is None:
                    return
                status = session.post(self.url + "/v1/batch", data=bodies[i], headers=headers, timeout=60).status_code
                if status != 200:
                    with lock:
                        errors[status] += 1

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
        if errors:
            raise BenchError(f"/v1/batch answered {dict(errors)}")
        return events / took

    def deliver(self, workers: int, expected: int, stall: float) -> tuple[float, dict[str, int]]:
        """Start the workers and wait for every delivery; deliveries/s from the first arrival to the last."""
        for n in range(workers):
            worker = Child(
                f"worker-{n + 1}",
                [venv_bin("python"), "manage.py", "worker"],
                self.env,
                self.data_dir / f"worker-{n + 1}.log",
            )
            self.children.append(worker)
            worker.start()
        for worker in self.children[-workers:]:
            worker.wait_for(lambda worker=worker: "cdphub worker:" in worker.output(), "not ready")
        last, last_change = 0, time.monotonic()
        while (got := self.received()) < expected:
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > stall:
                raise BenchError(f"delivery stalled at {got:,} of {expected:,}")
            time.sleep(0.1)
        rows = requests.get(self.receiver_url + "/_control/dump", timeout=120).json()
        arrivals = [arrival for arrival, _ in rows]
        seen = Counter(mid for _, items in rows for mid, _ in items)
        span = max(max(arrivals) - min(arrivals), 1e-6)
        time.sleep(1)  # the last records
        statuses = dict(self.rows("SELECT status, COUNT(*) FROM deliveries_delivery GROUP BY status"))
        duplicates = sum(1 for n in seen.values() if n > self.destinations)
        return len(rows) / span, {"duplicates": duplicates, **statuses}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    under_services(argv)
    destination_counts = args.destinations or [1, 4]
    worker_counts = args.workers or [1, 2]
    per_process = int(os.environ.get("CDPHUB_WORKERS", "4"))
    results, problems, rows = [], [], []
    for destinations in destination_counts:
        for workers in worker_counts:
            name = f"cdphub_scale_{os.getpid()}_{destinations}_{workers}"
            print(f"== {destinations} destination(s), {workers} worker process(es) ...", flush=True)
            try:
                with Hub(name, destinations) as hub:
                    ingest = hub.ingest(args.events, name)
                    expected = args.events * destinations
                    rate, statuses = hub.deliver(workers, expected, args.stall)
            except BenchError as exc:
                print(f"!! the benchmark could not run: {exc}", file=sys.stderr)
                return 2
            if statuses.get("delivered") != expected or statuses.get("duplicates"):
                problems.append(f"{destinations} dest x {workers} workers: {statuses} (expected {expected} delivered)")
            result = {
                "destinations": destinations,
                "workers": workers,
                "ingest_events_per_s": round(ingest),
                "deliveries_per_s": round(rate),
                "statuses": statuses,
            }
            results.append(result)
            load = os.getloadavg()[0]  # a machine shared with other work measures less: say how busy it was
            result["load_average_1min"] = round(load, 1)
            print(f"   ingest {ingest:,.0f} events/s, delivery {rate:,.0f} deliveries/s (load {load:.1f})", flush=True)
            cells = (f"{workers} x {per_process}", f"{ingest:,.0f}", f"{rate:,.0f}", f"{load:.1f}")
            rows.append((str(destinations), *cells))
    print_table(
        f"cdphub on PostgreSQL + Redis: {args.events:,} events, webhook destinations, {os.cpu_count()} cores",
        ("destinations", "worker processes", "ingest events/s", "deliveries/s", "load avg"),
        rows,
        right={2, 3, 4},
    )
    for problem in problems:
        print(f"!! {problem}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "problems": problems}, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
