"""Delivery benchmark: the real worker draining a backlog to a local webhook receiver, against a floor, and the
end-to-end latency of a steady stream through the real web server and worker.

    make bench                           # runs bench/ingest.py, then this
    .venv/bin/python bench/deliver.py --events 20000 --rate 100 --latency-seconds 20 --json /tmp/deliver.json

Steps: a fresh temporary data dir (CDPHUB_DATA_DIR, SQLite in WAL mode, the database broker; var/ is never
touched) -> migrate -> bench/receiver.py (asyncio, keep-alive, answers 200 at once) on a free loopback port,
its capacity measured with wrk -> import a source and one `webhook` destination pointing at it (rate limit
raised out of the way: the engine is measured, not the vendor's default of 1000 requests/s, which --vendor-rate
keeps) -> gunicorn as
`make run` serves it -> then, in this order:

  1. backlog   POST /v1/batch x 200 (100 events each): 20,000 accepted events with their Delivery rows, while
               no worker runs (the kicks wait in the broker, as after a restart)
  2. floor     as many processes as the worker has (Q_CLUSTER workers) POST the same 20,000 bodies with
               requests.Session (keep-alive) straight to the receiver                      -> requests/s
  3. engine    start `manage.py worker` and wait until the receiver has all 20,000           -> deliveries/s
  4. latency   with gunicorn and the worker running, offer --rate events/s to /v1/track for --latency-seconds
               (open loop); latency = receiver arrival - the event's receivedAt          -> p50 / p95 / p99

Checks: every event reaches the receiver exactly once, every Delivery row ends `delivered`, no failed one, no
traceback in the worker or gunicorn logs. Goals: engine >= 60% of the floor; latency p95 <= 250 ms.
Exit status: 0 = measured (a missed goal is a result); 1 = the hub misbehaved (lost, duplicated or failed
deliveries, ingest errors, tracebacks); 2 = the benchmark could not run.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from cpu import CpuSampler, cpu_counters, wait_for_idle
from harness import (
    ROOT,
    BenchError,
    Child,
    Run,
    manage,
    note_scrubbed,
    percentile,
    print_problems,
    print_table,
    start_web,
    start_worker,
    track_event,
    venv_bin,
)

RECEIVER = Path(__file__).resolve().parent / "receiver.py"
WRITE_KEY = "wk_bench_deliver"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
RATIO_GOAL = 0.60
P95_GOAL_MS = 250.0
BATCH = 100
# ---------------------------------------------------------------------------------------------- CPU


class CpuMeter(CpuSampler):
    """CPU seconds per process group (worker, web, receiver, this benchmark) and of everything else."""

    def __init__(self, groups: dict[str, int]) -> None:
        super().__init__()
        self.groups = {pgid: name for name, pgid in groups.items()}

    def name_of(self, pid: int, ppid: int, pgid: int) -> str | None:
        return self.groups.get(pgid)

    def __enter__(self) -> CpuMeter:
        self.busy0, self.steal0 = cpu_counters()
        self.t0 = time.monotonic()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        busy, steal = cpu_counters()
        self.seconds = time.monotonic() - self.t0
        self.busy, self.steal = busy - self.busy0, steal - self.steal0

    def cores(self) -> dict[str, float]:
        """Average cores used per group over the measured span, plus `other` and `steal`."""
        used = self.used()
        out = {name: used[name] / self.seconds for name in self.groups.values()}
        out["other"] = max(0.0, self.busy - self.steal - sum(used.values())) / self.seconds
        out["steal"] = self.steal / self.seconds
        return out


def describe_cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items())


# ---------------------------------------------------------------------------------------------- events


def parse_received_at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Bench(Run):
    run_id: str = field(default_factory=lambda: os.urandom(3).hex())
    receiver: Child | None = None
    web: Child | None = None
    worker: Child | None = None
    receiver_url: str = ""
    notes: list[str] = field(default_factory=list)

    def statuses(self) -> dict[str, int]:
        return dict(self.query("SELECT status, COUNT(*) FROM deliveries_delivery GROUP BY status"))

    # ---- set-up

    def start_receiver(self) -> None:
        self.receiver = Child("receiver", [venv_bin("python"), str(RECEIVER)], self.env, self.data_dir / "receiver.log")
        self.receiver.start()
        self.receiver.wait_for(lambda: "READY" in self.receiver.output(), "no READY line")
        port = int(self.receiver.output().split("READY", 1)[1].split()[0])
        self.receiver_url = f"http://127.0.0.1:{port}"

    def received(self) -> int:
        return requests.get(self.receiver_url + "/_control/count", timeout=5).json()["count"]

    def dump(self) -> list[tuple[float, list[list[str]]]]:
        return requests.get(self.receiver_url + "/_control/dump", timeout=60).json()

    def reset(self) -> None:
        requests.post(self.receiver_url + "/_control/reset", timeout=5)

    def receiver_capacity(self) -> None:
        """Load the receiver alone with wrk (if installed) to show it is not the bottleneck."""
        wrk = shutil.which("wrk")
        if not wrk:
            self.notes.append("wrk not installed: receiver capacity not measured (apt-get install wrk)")
            return
        body = orjson.dumps(track_event(0, messageId="capacity") | {"receivedAt": "2025-06-01T12:00:00.000Z"}).decode()
        script = self.data_dir / "receiver.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        with CpuMeter({"receiver": self.receiver.proc.pid}) as meter:
            proc = subprocess.run(
                [wrk, "-t1", "-c8", "-d3s", "-s", str(script), self.receiver_url + "/hook"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        for line in proc.stdout.splitlines():
            if line.startswith("Requests/sec:"):
                rps = float(line.split()[1])
                cpu_ms = meter.cores()["receiver"] * 1000 / rps if rps else 0.0
                self.results["receiver"] = {"rps": rps, "cpu_ms_per_request": cpu_ms}
        self.reset()

    def configure(self) -> None:
        manage(self.env, "migrate", "--noinput", "-v0")
        workspace = {
            "sources": [{"slug": "bench", "name": "Bench", "kind": "http", "write_key": WRITE_KEY}],
            "destinations": [
                {
                    "slug": "bench-hook",
                    "name": "Bench webhook",
                    "vendor": "webhook",
                    "sources": ["bench"],
                    "config": {"url": self.receiver_url + "/hook"},
                    # Out of the way, so the engine is measured, unless --vendor-rate asks for the vendor's
                    # default (adaptive, up to 1000 requests/s).
                    **({} if self.args.vendor_rate else {"rate_limit": 1_000_000, "rate_period": 1}),
                }
            ],
        }
        path = self.data_dir / "bench-workspace.json"
        path.write_text(json.dumps(workspace))
        manage(self.env, "import_workspace", str(path))

    def start_web(self) -> None:
        self.web = start_web(self.data_dir, self.env, self.web_url)

    def start_worker(self) -> None:
        self.worker = start_worker(self.data_dir, self.env)

    # ---- 1. backlog

    def backlog(self, count: int) -> list[str]:
        ids = [f"bd-{self.run_id}-{i}" for i in range(count)]
        session = requests.Session()
        started = time.monotonic()
        for first in range(0, count, BATCH):
            batch = [track_event(i, messageId=ids[i]) for i in range(first, min(count, first + BATCH))]
            response = session.post(
                self.web_url + "/v1/batch",
                data=orjson.dumps({"batch": batch}),
                headers={"Content-Type": "application/json", "Authorization": AUTH},
                timeout=30,
            )
            if response.status_code != 200 or not response.json().get("success"):
                raise BenchError(f"/v1/batch answered {response.status_code}: {response.text[:300]}")
        took = time.monotonic() - started
        pending = self.statuses().get("pending", 0)
        if pending != count:
            raise BenchError(f"the backlog has {pending} pending deliveries, not {count}: {self.statuses()}")
        print(f"backlog: {count:,} events accepted through /v1/batch in {took:.1f} s, {pending:,} pending", flush=True)
        return ids

    # ---- 2. floor

    def floor(self, processes: int) -> None:
        rows = self.query("SELECT payload FROM deliveries_event WHERE status = 'accepted' ORDER BY id")
        bodies = [orjson.dumps(orjson.loads(payload)) for (payload,) in rows]  # what the webhook vendor sends
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        go = context.Event()
        procs = [
            context.Process(target=_floor_client, args=(self.receiver_url + "/hook", bodies[i::processes], go, results))
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        time.sleep(0.5)  # every client has forked and imported
        with CpuMeter(self.groups()) as meter:
            started = time.monotonic()
            go.set()
            parts = [results.get(timeout=600) for _ in procs]
            took = time.monotonic() - started
        for p in procs:
            p.join(10)
        ok = sum(part["ok"] for part in parts)
        errors = sum(part["errors"] for part in parts)
        received = self.received()
        self.reset()
        if ok != len(bodies) or errors or received != len(bodies):
            raise BenchError(f"floor: {ok} answered 200, {errors} errors, receiver got {received} of {len(bodies)}")
        self.results["floor"] = {"rps": len(bodies) / took, "seconds": took, "processes": processes}
        self.results["floor"]["cores"] = meter.cores()
        print(f"floor: {len(bodies):,} POSTs in {took:.2f} s = {len(bodies) / took:,.0f} req/s", flush=True)

    def groups(self) -> dict[str, int]:
        groups = {"bench": os.getpgid(0)}
        for child in (self.worker, self.web, self.receiver):
            if child and child.proc and child.proc.poll() is None:
                groups[child.name] = child.proc.pid
        return groups

    # ---- 3. engine

    def engine(self, ids: list[str]) -> None:
        count = len(ids)
        started_wall = time.time()
        started = time.monotonic()
        self.start_worker()
        ready = time.monotonic() - started
        last, last_change = 0, time.monotonic()
        with CpuMeter(self.groups()) as meter:  # from the worker's ready line to the last arrival
            while True:
                got = self.received()
                if got >= count:
                    break
                if got != last:
                    last, last_change = got, time.monotonic()
                elif time.monotonic() - last_change > self.args.stall:
                    self.problems.append(f"engine: stalled at {got:,} of {count:,} received: {self.statuses()}")
                    break
                time.sleep(0.1)
        settled = self.settle(count)
        rows = self.dump()
        arrivals = [arrival for arrival, _ in rows]
        seen = Counter(mid for _, items in rows for mid, _ in items)
        self.check_exactly_once("engine", ids, seen)
        if arrivals:
            first, last_arrival = min(arrivals), max(arrivals)
            span = max(last_arrival - first, 1e-6)
            self.results["engine"] = {
                "deliveries": len(rows),
                "rps": len(rows) / span,
                "rps_with_startup": len(rows) / (last_arrival - started_wall),
                "first_after_s": first - started_wall,
                "worker_ready_s": ready,
                "seconds": span,
                "cores": meter.cores(),
                "statuses": settled,
            }
            print(
                f"engine: {len(rows):,} deliveries in {span:.2f} s = {len(rows) / span:,.0f}/s "
                f"(first {first - started_wall:.2f} s after the worker was started)",
                flush=True,
            )
        self.reset()

    def settle(self, expected_delivered: int, timeout: float = 30.0) -> dict[str, int]:
        """Wait for every Delivery row to leave pending/in_flight/retrying; check they all ended delivered."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.statuses()
            if not any(counts.get(s) for s in ("pending", "in_flight", "retrying")) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if counts.get("delivered", 0) != expected_delivered or counts.get("failed"):
            self.problems.append(f"{expected_delivered:,} deliveries should be delivered; the rows say {counts}")
        return counts

    def check_exactly_once(self, phase: str, ids: list[str], seen: Counter[str]) -> None:
        missing = [i for i in ids if i not in seen]
        duplicated = {i: n for i, n in seen.items() if n > 1}
        unknown = set(seen) - set(ids)
        if missing:
            self.problems.append(f"{phase}: {len(missing)} events never reached the receiver (e.g. {missing[:3]})")
        if duplicated:
            sample = dict(itertools.islice(duplicated.items(), 3))
            self.problems.append(f"{phase}: {len(duplicated)} events reached the receiver more than once ({sample})")
        if unknown:
            self.problems.append(f"{phase}: {len(unknown)} unexpected messageIds reached the receiver")

    # ---- 4. latency

    def latency(self, rate: float, seconds: float, delivered_before: int) -> None:
        total = int(rate * seconds)
        ids = [f"lat-{self.run_id}-{i}" for i in range(total)]
        next_index = itertools.count()
        lock = threading.Lock()
        answers: Counter[int] = Counter()
        ingest_ms: list[float] = []
        behind: list[float] = []
        t0 = time.monotonic() + 0.2

        def sender() -> None:
            session = requests.Session()
            headers = {"Content-Type": "application/json", "Authorization": AUTH}
            while True:
                with lock:
                    i = next(next_index)
                if i >= total:
                    return
                due = t0 + i / rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                sent = time.monotonic()
                try:
                    status = session.post(
                        self.web_url + "/v1/track",
                        data=orjson.dumps(track_event(i, messageId=ids[i])),
                        headers=headers,
                        timeout=10,
                    ).status_code
                except requests.RequestException:
                    status = 0
                with lock:
                    answers[status] += 1
                    ingest_ms.append((time.monotonic() - sent) * 1000)
                    behind.append(max(0.0, sent - due))

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(self.args.senders)]
        with CpuMeter(self.groups()) as meter:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            offered = total / max(time.monotonic() - t0, 1e-6)
            deadline = time.monotonic() + 30
            while self.received() < answers[200] and time.monotonic() < deadline:
                time.sleep(0.05)
        if answers[200] != total:
            self.problems.append(f"latency: /v1/track answers {dict(answers)} (all {total} should be 200)")
        self.settle(delivered_before + answers[200])
        rows = self.dump()
        seen = Counter(mid for _, items in rows for mid, _ in items)
        self.check_exactly_once("latency", ids, seen)
        latencies = [(arrival - parse_received_at(received)) * 1000 for arrival, items in rows for _, received in items]
        self.results["latency"] = {
            "events": total,
            "offered_rate": offered,
            "p50_ms": percentile(latencies, 0.50),
            "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies, default=float("nan")),
            "ingest_p50_ms": percentile(ingest_ms, 0.50),
            "ingest_p99_ms": percentile(ingest_ms, 0.99),
            "sender_behind_p99_ms": percentile(behind, 0.99) * 1000,
            "cores": meter.cores(),
        }
        lat = self.results["latency"]
        print(
            f"latency: {total:,} events at {offered:.0f}/s: p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms",
            flush=True,
        )

    # ---- logs

    def check_logs(self) -> None:
        for child in (self.worker, self.web):
            if child is None:
                continue
            text = child.output()
            if "Traceback" in text or "ERROR" in text:
                self.problems.append(f"{child.name} log has errors; last lines:\n{child.tail(15)}")


def _floor_client(url: str, bodies: list[bytes], go: Any, results: Any) -> None:
    """One floor process: POST each body with a keep-alive requests.Session, as fast as answers come."""
    session = requests.Session()
    headers = {"Content-Type": "application/json", "User-Agent": "cdphub-bench-floor"}
    ok = errors = 0
    go.wait()
    for body in bodies:
        try:
            if session.post(url, data=body, headers=headers, timeout=10).status_code == 200:
                ok += 1
            else:
                errors += 1
        except requests.RequestException:
            errors += 1
    results.put({"ok": ok, "errors": errors})


# ---------------------------------------------------------------------------------------------- report


def report(bench: Bench, workers: int) -> None:
    r = bench.results
    engine, floor, lat = r.get("engine"), r.get("floor"), r.get("latency")
    ratio = engine["rps"] / floor["rps"] if engine and floor else None
    rows = []
    if engine:
        rows.append(("engine  manage.py worker (backlog)", f"{engine['rps']:,.0f} deliveries/s", "", ""))
        rows.append(("        incl. worker start-up", f"{engine['rps_with_startup']:,.0f} deliveries/s", "", ""))
    if floor:
        rows.append((f"floor   {floor['processes']} x requests.Session", f"{floor['rps']:,.0f} req/s", "", ""))
    if ratio is not None:
        verdict = "PASS" if ratio >= RATIO_GOAL else "MISS"
        rows.append(("engine / floor", f"{ratio:.0%}", f">= {RATIO_GOAL:.0%}", verdict))
    if lat:
        verdict = "PASS" if lat["p95_ms"] <= P95_GOAL_MS else "MISS"
        rows.append(
            (
                f"latency {lat['offered_rate']:.0f} ev/s /v1/track: p50/p95/p99",
                f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} / {lat['p99_ms']:.0f} ms",
                f"p95 <= {P95_GOAL_MS:.0f} ms",
                verdict,
            )
        )
    if "receiver" in r:
        rec = r["receiver"]
        rows.append(
            (
                "receiver alone (wrk, 8 conns)",
                f"{rec['rps']:,.0f} req/s",
                f"{rec['cpu_ms_per_request']:.3f} ms CPU/req",
                "",
            )
        )
    title = (
        f"cdphub delivery benchmark  ({bench.args.events:,} events, one webhook destination, SQLite WAL + database "
        f"broker, {workers} worker processes, {os.cpu_count()} cores)"
    )
    print_table(title, ("metric", "result", "goal", "verdict"), rows)
    print()
    print("CPU (cores used, averaged over the phase):")
    for name in ("floor", "engine", "latency"):
        if name in r:
            print(f"  {name:<8} {describe_cores(r[name]['cores'])}")
    per = []
    if floor:
        per.append(f"floor clients {floor['cores']['bench'] * 1000 / floor['rps']:.2f} ms per request")
    if engine:
        per.append(f"worker {engine['cores']['worker'] * 1000 / engine['rps']:.2f} ms per delivery (backlog)")
    if lat:
        worker, web = lat["cores"].get("worker", 0.0), lat["cores"].get("gunicorn", 0.0)
        rate = lat["offered_rate"]
        per.append(f"latency phase: worker {worker * 1000 / rate:.2f} + web {web * 1000 / rate:.2f} ms per event")
    if per:
        print("CPU time: " + "; ".join(per))
    if engine:
        print(
            f"engine: worker ready {engine['worker_ready_s']:.1f} s after start, first delivery "
            f"{engine['first_after_s']:.2f} s after start; rows afterwards {engine['statuses']}"
        )
    if lat:
        print(
            f"latency: max {lat['max_ms']:.0f} ms; ingest answer p50 {lat['ingest_p50_ms']:.1f} ms, p99 "
            f"{lat['ingest_p99_ms']:.1f} ms; sender behind schedule p99 {lat['sender_behind_p99_ms']:.1f} ms "
            "(receivedAt has millisecond precision)"
        )
    noisy = [
        n for n in ("floor", "engine", "latency") if n in r and r[n]["cores"]["other"] + r[n]["cores"]["steal"] > 0.15
    ]
    if noisy:
        print(f"!! other processes used CPU during {', '.join(noisy)}: the numbers are low; rerun on a quiet machine")
    for note in bench.notes:
        print(f"note: {note}")
    print()
    print_problems(
        "THE HUB MISBEHAVED",
        bench.problems,
        "Correctness: every event reached the receiver exactly once; every delivery ended delivered.",
    )
    bench.results["ratio"] = ratio
    bench.results["problems"] = bench.problems


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="backlog size (20,000)")
    p.add_argument("--rate", type=float, default=100, help="events/s offered in the latency phase (100)")
    p.add_argument("--latency-seconds", type=float, default=20, help="length of the latency phase (20)")
    p.add_argument("--senders", type=int, default=32, help="client threads of the latency phase (32)")
    p.add_argument("--stall", type=float, default=60, help="give up when nothing arrives for this long (60 s)")
    p.add_argument("--skip", choices=("floor", "engine", "latency"), action="append", default=[])
    p.add_argument("--wait-idle", type=float, default=0, metavar="S", help="wait up to S s for a quiet machine")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (logs included)")
    p.add_argument(
        "--vendor-rate", action="store_true", help="keep the webhook vendor's default rate limit (adaptive, 1000/s)"
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def worker_count() -> int:
    """The Q_CLUSTER workers `make run` gets: CDPHUB_WORKERS, else the settings default."""
    text = (ROOT / "cdphub" / "settings.py").read_text()
    default = text.split('"CDPHUB_WORKERS", "', 1)[1].split('"', 1)[0] if '"CDPHUB_WORKERS", "' in text else "4"
    return int(os.environ.get("CDPHUB_WORKERS") or default)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    note_scrubbed()
    busy = wait_for_idle(args.wait_idle)
    print(f"machine load before starting: {busy:.2f} of {os.cpu_count()} cores busy", flush=True)
    workers = worker_count()
    data_dir = Path(tempfile.mkdtemp(prefix="cdphub-bench-deliver-"))
    bench = Bench(args, data_dir)
    started = time.monotonic()
    try:
        print(f"data dir {data_dir}; receiver, migrate, workspace, gunicorn ...", flush=True)
        bench.start_receiver()
        bench.receiver_capacity()
        bench.configure()
        bench.start_web()
        ids = bench.backlog(args.events)
        if "floor" not in args.skip:
            bench.floor(workers)
        if "engine" not in args.skip:
            bench.engine(ids)
        if "latency" not in args.skip:
            if bench.worker is None:
                bench.start_worker()
            delivered = bench.statuses().get("delivered", 0)
            bench.latency(args.rate, args.latency_seconds, delivered)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        stop_all(bench)
        cleanup(data_dir, args.keep)
        return 2
    except BaseException:
        stop_all(bench)
        cleanup(data_dir, args.keep)
        raise
    codes = stop_all(bench)
    if codes.get("worker") not in (0, None):
        bench.problems.append(f"the worker exited with {codes['worker']} after SIGTERM")
    bench.check_logs()
    report(bench, workers)
    print(f"total time {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=2, default=str))
    cleanup(data_dir, args.keep)
    return 1 if bench.problems else 0


def stop_all(bench: Bench) -> dict[str, int | None]:
    return {c.name: c.stop() for c in (bench.worker, bench.web, bench.receiver) if c is not None}


def cleanup(data_dir: Path, keep: bool) -> None:
    if keep:
        print(f"kept {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
