"""Purge benchmark: ingest throughput without a purge, and while the purge deletes a million old rows.

    make bench                                  # runs this with the others
    .venv/bin/python bench/purge.py --rows 1000000 --duration 30 --json /tmp/purge.json

Steps: a fresh temporary data dir (SQLite in WAL mode; var/ is never touched) -> migrate -> a `bench` source and a
disabled destination -> --rows old rows loaded with SQL (a recursive CTE per table, in one transaction): a third
events received 40-100 days ago, a third their delivered deliveries, a third their attempts, each with a recorded
HTTP exchange; the Schema page's fold marked as past them -> gunicorn as `make run` starts it -> two phases of
POST /v1/batch (100 track events per request) with wrk (bench/ingest.lua), --duration seconds each:

  1. ingest alone;
  2. ingest while the worker's sweeper purges the old rows at its pace (purge_if_due() at every sweep: time-boxed
     calls taking at most a tenth of the time while a backlog lasts), from another process, 2 s into the phase;
  3. ingest while `manage.py purge` deletes the rest at full speed (chunk after chunk), 2 s into the phase; it
     goes on after the phase until every old row is gone;
  4. ingest alone again (the machine's load drifts: the rate without a purge is the mean of phases 1 and 4).

Ingest's rate is counted in the database (accepted events received per second) while the purge ran, and over the
same seconds of phases 1 and 4. Reported per purge phase: both rates and their ratio, rows deleted per second, the
chunks' lock times (p50, p99, longest; the bound is RETENTION_CHUNK_MS, 50 ms) and the share of time the lock was
held.

Goals (issue 14): the purge never holds the write lock longer than ~50 ms (a chunk over 2x the bound is a miss) and,
at the worker's pace, does not slow ingest measurably (>= 90% of the rate without: the noise of a shared 2-core
machine). At full speed (`manage.py purge`, phase 3) the cost is reported, not judged.
Exit status: 0 = measured; 1 = a goal missed or the hub misbehaved; 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import BenchError, Child, SandboxRun, manage, print_table, start_web, track_event, venv_bin
from ingest import AUTH, LUA, WRITE_KEY, batch_body, ensure_wrk

RATIO_GOAL = 0.90
LOCK_BOUND_MS = 50
OLD_DAYS = (100, 40)  # the old rows were received between these many days ago
EXCHANGE = {
    "request": {
        "method": "POST",
        "url": "https://hooks.example.com/in",
        "headers": {"Content-Type": "application/json", "User-Agent": "cdphub/1", "Authorization": "[redacted]"},
        "body": json.dumps(track_event(1)),
    },
    "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": '{"ok":true}'},
    "duration_ms": 84.2,
}

# The purge from another process, as the worker's sweeper paces it ("sweeper SECONDS": purge_if_due() at every
# sweep, as `manage.py worker` calls it) or at full speed ("full": purge(), as `manage.py purge`); its report as one
# JSON line.
PURGE = r"""
import json, sys, time
import django
django.setup()
from django.conf import settings
from deliveries.engine.purge import purge, purge_if_due
started = time.time()
reports = []
if sys.argv[1] == "full":
    reports.append(purge())
else:
    while time.time() < started + float(sys.argv[2]):
        report = purge_if_due()
        reports += [report] if report else []
        time.sleep(settings.DELIVERY_SWEEP_SECONDS)
chunks = sorted(ms for r in reports for ms in r.chunk_ms) or [0.0]
rows, seconds = sum(r.rows for r in reports), sum(r.seconds for r in reports)
print(json.dumps({"started": started, "ended": time.time(), "rows": rows, "seconds": seconds, "calls": len(reports),
                  "chunks": len(chunks), "p50_ms": chunks[len(chunks) // 2], "p99_ms": chunks[int(len(chunks) * 0.99)],
                  "longest_ms": chunks[-1], "lock_seconds": sum(chunks) / 1000,
                  "over_bound": sum(ms > settings.RETENTION_CHUNK_MS for ms in chunks)}))
"""


def db_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Bench(SandboxRun):
    def prepare(self) -> None:
        manage(self.env, "migrate", "--noinput", "-v0")
        workspace = {
            "sources": [{"slug": "bench", "name": "Bench", "kind": "http", "write_key": WRITE_KEY}],
            "destinations": [
                {
                    "slug": "old-hook",
                    "name": "Old hook",
                    "vendor": "webhook",
                    "sources": ["bench"],
                    "enabled": False,  # ingest routes nothing: the phases measure the write path of events
                    "config": {"url": "https://hooks.example.com/in"},
                }
            ],
        }
        path = self.data_dir / "workspace.json"
        path.write_text(json.dumps(workspace))
        manage(self.env, "import_workspace", str(path))

    def load_old_rows(self) -> None:
        """A third of --rows each: events, their delivered deliveries, their attempts; all weeks past retention."""
        n = self.args.rows // 3
        conn = sqlite3.connect(self.db, timeout=60)
        [(source,)] = conn.execute("SELECT id FROM integrations_source WHERE slug = 'bench'").fetchall()
        [(destination,)] = conn.execute("SELECT id FROM integrations_destination WHERE slug = 'old-hook'").fetchall()
        now = datetime.now(UTC)
        first = now - timedelta(days=OLD_DAYS[0])
        step = (OLD_DAYS[0] - OLD_DAYS[1]) * 86400 / n  # seconds between two old events
        payload = json.dumps(track_event(1, "Old Order"))
        started = time.monotonic()
        numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        at = "strftime('%Y-%m-%d %H:%M:%f', ?, '+' || (i * ?) || ' seconds')"
        with conn:
            base = conn.execute("SELECT COALESCE(MAX(id), 0) FROM deliveries_event").fetchone()[0]
            conn.execute(
                "INSERT INTO deliveries_event (source_id, message_id, type, event, user_id, anonymous_id, email, "
                "payload, received_at, timestamp, status, reject_reason) "
                f"{numbers} SELECT ?, 'old-' || i, 'track', 'Old Order', 'user-' || (i % 5000), '', '', ?, {at}, "
                f"{at}, 'accepted', '' FROM n",
                (n, source, payload, db_time(first), step, db_time(first), step),
            )
            conn.execute(
                "INSERT INTO deliveries_delivery (event_id, destination_id, status, attempts, throttled, error_code, "
                "error_message, hint, delivered_at, latency_ms, is_test, created_at, updated_at) "
                "SELECT id, ?, 'delivered', 1, 0, '', '', '', received_at, 120, 0, received_at, received_at "
                "FROM deliveries_event WHERE id > ? ORDER BY id",
                (destination, base),
            )
            conn.execute(
                "INSERT INTO deliveries_attempt (delivery_id, number, started_at, duration_ms, outcome, status_code, "
                "error_code, error_message, hint, exchanges, logs) "
                "SELECT id, 1, created_at, 84, 'delivered', 200, '', '', '', ?, '[]' FROM deliveries_delivery "
                "WHERE event_id > ? ORDER BY id",
                (json.dumps([EXCHANGE]), base),
            )
            # The Schema page counted these long ago: the purge takes accepted events only behind its fold.
            top = conn.execute("SELECT MAX(id) FROM deliveries_event").fetchone()[0]
            conn.execute(
                "INSERT INTO deliveries_rollupcursor (name, position) VALUES ('schema', ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (top,),
            )
        conn.close()
        took = time.monotonic() - started
        self.results["old_rows"] = n * 3
        self.results["load_seconds"] = round(took, 1)
        self.results["db_mb_loaded"] = round(self.db.stat().st_size / 1e6)
        print(f"loaded {n * 3:,} old rows in {took:.0f} s ({self.results['db_mb_loaded']} MB)", flush=True)

    def wrk(self, seconds: float, tag: str) -> subprocess.Popen:
        body = self.data_dir / "batch.json"
        if not body.exists():
            body.write_bytes(batch_body("bench.purge", 100, False))
        cmd = [
            self.args.wrk,
            "-t2",
            f"-c{self.args.connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
        ]
        cmd += [self.web_url, "--", "batch", str(body), "100", AUTH, "0", uuid.uuid4().hex[:8]]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wrk_result(self, proc: subprocess.Popen, name: str) -> dict[str, Any]:
        out, err = proc.communicate(timeout=self.args.duration + 120)
        match = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.M)
        if proc.returncode or not match:
            raise BenchError(f"wrk failed ({proc.returncode}):\n{out}\n{err}")
        result = json.loads(match.group(1))
        statuses = {k: v for k, v in result.get("statuses", {}).items() if not k.startswith("2")}
        if statuses:
            self.problems.append(f"{name}: non-2xx answers {statuses}")
        return result

    def rate(self, start: float, end: float) -> float:
        """Accepted events received per second between two moments (the received_at index)."""
        since, until = (db_time(datetime.fromtimestamp(t, UTC)) for t in (start, end))
        [(count,)] = self.query(
            "SELECT COUNT(*) FROM deliveries_event WHERE received_at >= ? AND received_at < ? AND status = 'accepted'",
            since,
            until,
        )
        return count / (end - start)

    def purge_during_ingest(self, name: str, mode: list[str]) -> dict[str, Any]:
        """Ingest for --duration while the purge runs (from 2 s in): ingest's rate over the purge's time in it."""
        duration = self.args.duration
        started = time.time()
        wrk = self.wrk(duration, name)
        time.sleep(2)
        env = {**self.env, "DJANGO_SETTINGS_MODULE": "cdphub.settings"}
        purge = Child(f"purge-{name}", [venv_bin("python"), "-c", PURGE, *mode], env, self.data_dir / f"{name}.log")
        self.children.append(purge)
        purge.start()
        result = self.wrk_result(wrk, f"ingest during the purge ({name})")
        purge.proc.wait(timeout=3600)
        if purge.proc.returncode:
            raise BenchError(f"the purge failed:\n{purge.tail()}")
        report = json.loads(purge.output().strip().splitlines()[-1])
        end = min(report["ended"], started + duration) - 0.5
        during = self.rate(report["started"], end)
        lock = report["lock_seconds"]
        phase = {
            "offsets": (report["started"] - started, end - started),
            "ingest_events_s": round(during),
            "load_average": round(os.getloadavg()[0], 1),
            "window_seconds": round(end - report["started"], 1),
            "p99_ms": round(result["latency_us"]["p99"] / 1000, 1),
            "rows": report["rows"],
            "purge_seconds": round(report["ended"] - report["started"], 1),
            "rows_s": round(report["rows"] / (report["ended"] - report["started"])),
            "calls": report["calls"],
            "chunks": report["chunks"],
            "chunk_p50_ms": round(report["p50_ms"], 1),
            "chunk_p99_ms": round(report["p99_ms"], 1),
            "longest_ms": round(report["longest_ms"], 1),
            "chunks_over_bound": report["over_bound"],
            "lock_share": round(lock / (report["ended"] - report["started"]), 3),
        }
        self.results[name] = phase
        print(f"  {name}: {json.dumps(phase)}", flush=True)
        return phase

    def phases(self) -> None:
        self.prepare()
        self.load_old_rows()
        self.children.append(start_web(self.data_dir, self.env, self.web_url))
        duration = self.args.duration
        alone_started = [time.time()]
        print(f"phase 1: ingest alone for {duration:g} s ...", flush=True)
        self.wrk_result(self.wrk(duration, "alone"), "ingest alone")
        print(f"phase 2: ingest for {duration:g} s while the worker's sweeper purges at its pace ...", flush=True)
        self.purge_during_ingest("sweeper", ["sweeper", str(duration - 2)])
        print(f"phase 3: ingest for {duration:g} s while `manage.py purge` deletes the rest at full speed ...")
        self.purge_during_ingest("full", ["full"])
        alone_started.append(time.time())
        print(f"phase 4: ingest alone again for {duration:g} s ...", flush=True)
        self.wrk_result(self.wrk(duration, "alone-again"), "ingest alone again")
        # Ingest alone over the same seconds of phases 1 and 4 as the purge's window: the machine's load drifts.
        for name in ("sweeper", "full"):
            phase = self.results[name]
            low, high = phase.pop("offsets")
            alone = sum(self.rate(t + low, t + high) for t in alone_started) / 2
            phase["ingest_alone_events_s"] = round(alone)
            phase["ratio"] = round(phase["ingest_events_s"] / alone, 2) if alone else 0
        [(left,)] = self.query("SELECT COUNT(*) FROM deliveries_event WHERE event = 'Old Order'")
        if left:
            self.problems.append(f"{left:,} old events are still there after the purge")
        self.check_logs()


def judge(bench: Bench) -> None:
    r = bench.results
    rows = []
    for name, label in (("sweeper", "the worker's sweeper"), ("full", "manage.py purge (full speed)")):
        p = r[name]
        rows.append(
            [
                label,
                f"{p['ingest_alone_events_s']:,}",
                f"{p['ingest_events_s']:,} ({p['ratio']:.0%})",
                f"{p['rows']:,} in {p['purge_seconds']:g} s = {p['rows_s']:,}/s",
                f"{p['chunks']:,}: p50 {p['chunk_p50_ms']:g}, p99 {p['chunk_p99_ms']:g}, max {p['longest_ms']:g}",
                f"{p['lock_share']:.0%}",
            ]
        )
        if p["longest_ms"] > 2 * LOCK_BOUND_MS:
            bench.problems.append(f"{name}: a chunk held the write lock {p['longest_ms']:g} ms (bound {LOCK_BOUND_MS})")
        if name == "sweeper" and p["ratio"] < RATIO_GOAL:
            bench.problems.append(f"ingest ran at {p['ratio']:.0%} of its rate while the sweeper purged")
    print_table(
        f"Ingest (POST /v1/batch of 100, SQLite WAL) while the purge deletes {r['old_rows']:,} old rows",
        ["purge", "ingest alone ev/s", "ingest during ev/s", "deleted", "chunks (lock ms)", "lock held"],
        rows,
        right={1, 2, 3},
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="old rows to load and purge (1,000,000)")
    p.add_argument("--duration", type=float, default=30, help="seconds of ingest per phase (30)")
    p.add_argument("--connections", type=int, default=16, help="wrk's keep-alive connections (16)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (logs included)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.wrk = ensure_wrk(install=True)
    if not args.wrk:
        print("!! the purge benchmark needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="cdphub-bench-purge-")))
    return bench.execute(bench.phases, judge=lambda: judge(bench))


if __name__ == "__main__":
    sys.exit(main())
