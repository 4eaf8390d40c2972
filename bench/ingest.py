"""Ingest benchmark: the hub served exactly as `make run` serves it, loaded with wrk on loopback.

    make bench                         # = .venv/bin/python bench/ingest.py
    .venv/bin/python bench/ingest.py --duration 20 --connections 16 --json /tmp/bench.json

Steps: a fresh temporary data dir (CDPHUB_DATA_DIR, SQLite; var/ is never touched) -> migrate ->
import a `bench` source (write key wk_bench) -> `.venv/bin/gunicorn -c cdphub/gunicorn_conf.py` on a
free loopback port -> wait for /healthz -> warm up -> measure, in this order and against the same
server:

  1. floor   GET  /healthz     (a view that does nothing: what HTTP + Django cost)   requests/s
  2. single  POST /v1/track    (one ~450-byte track event per request)                requests/s
  3. batch   POST /v1/batch    (100 such events per request)                          events/s

then SIGTERM gunicorn (in-flight requests finish), count the Event rows per phase in the SQLite file
and compare with what the clients were told was accepted, print the table, delete the temp dir.

Goals: batch >= 10,000 events/s; single >= 50% of the floor. A missed goal is a result, not an error:
the exit status is 0. It is 1 when the hub misbehaved (non-2xx answers, socket errors, rows that do
not match what was acknowledged, rejected rows) and 2 when the benchmark could not run at all.

The load generator is wrk (Debian package `wrk`; installed with apt-get when missing and running as
root) with bench/ingest.lua. Without wrk a multi-process Python client is used; it needs far more CPU
than wrk and the two share the same cores, so its numbers are much lower (the table says so).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpu import CpuSampler, cpu_counters, wait_for_idle
from harness import (
    BenchError,
    Child,
    free_port,
    hub_env,
    manage,
    note_scrubbed,
    print_problems,
    print_table,
    query,
    start_web,
    track_event,
)

LUA = Path(__file__).resolve().parent / "ingest.lua"
WRITE_KEY = "wk_bench"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
WORKSPACE = {"sources": [{"slug": "bench", "name": "Bench", "kind": "http", "write_key": WRITE_KEY}]}
BATCH_GOAL_EVENTS_S = 10_000
SINGLE_GOAL_RATIO = 0.50

# ---------------------------------------------------------------------------------------------- bodies


def bench_event(name: str, n: int, message_id: bool) -> dict[str, Any]:
    """A track call as SDKs send it, with its timestamp; with `message_id`, a messageId that ingest.lua replaces
    per request (--message-ids)."""
    event = track_event(n, name, timestamp="2025-06-01T12:00:00.000Z")
    if message_id:
        event["messageId"] = "@MID@"
    return event


def single_body(name: str, message_id: bool) -> bytes:
    return json.dumps(
        {**bench_event(name, 1, message_id), "sentAt": "2025-06-01T12:00:01.000Z"}, separators=(",", ":")
    ).encode()


def batch_body(name: str, size: int, message_id: bool) -> bytes:
    batch = [bench_event(name, i, message_id) for i in range(size)]
    return json.dumps({"batch": batch, "sentAt": "2025-06-01T12:00:01.000Z"}, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------- server


@dataclass
class Hub:
    data_dir: Path
    port: int
    extra_args: list[str]
    web: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "cdphub.sqlite3"

    @property
    def pid(self) -> int:
        """gunicorn's master process."""
        return self.web.proc.pid

    def prepare(self) -> None:
        env = hub_env(self.data_dir, self.port)
        manage(env, "migrate", "--noinput", "-v0")
        workspace = self.data_dir / "bench-workspace.json"
        workspace.write_text(json.dumps(WORKSPACE))
        manage(env, "import_workspace", str(workspace))

    def start(self) -> None:
        # Own session: a Ctrl-C on the benchmark reaches only us; we stop gunicorn ourselves.
        self.web = start_web(self.data_dir, hub_env(self.data_dir, self.port), self.url, self.extra_args)

    def stop(self) -> int | None:
        """SIGTERM the master (workers finish in-flight requests), wait; SIGKILL only if it hangs."""
        return self.web.stop() if self.web else None

    def log_text(self) -> str:
        return self.web.output() if self.web else ""

    def log_tail(self, lines: int = 30) -> str:
        return self.web.tail(lines) if self.web else ""


# ---------------------------------------------------------------------------------------------- load


@dataclass
class Phase:
    name: str  # floor | single | batch
    label: str  # event name stored in the rows, to count them per phase afterwards
    per_request: int
    duration: float
    result: dict[str, Any] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    system_cpu_s: float = 0.0
    steal_s: float = 0.0
    spread: str = "?"
    db_events: int | None = None

    @property
    def other_cpu_s(self) -> float:
        """CPU used by neither the hub nor the load generator: other work on the machine (noise)."""
        return max(0.0, self.system_cpu_s - self.steal_s - self.server_cpu_s - self.client_cpu_s)

    @property
    def seconds(self) -> float:
        return self.result["duration_us"] / 1e6

    @property
    def rps(self) -> float:
        return self.result["requests"] / self.seconds

    @property
    def ok_rps(self) -> float:
        return self.result["ok"] / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.result["accepted_events"] / self.seconds

    @property
    def answered(self) -> int:
        return sum(self.result["statuses"].values())

    @property
    def non_2xx(self) -> dict[str, int]:
        return {s: n for s, n in self.result["statuses"].items() if not 200 <= int(s) < 300}

    @property
    def socket_errors(self) -> dict[str, int]:
        return {k: v for k, v in self.result["errors"].items() if v and k != "status"}


def ensure_wrk(install: bool) -> str | None:
    found = shutil.which("wrk")
    if found or not install:
        return found
    if os.geteuid() != 0:
        print("wrk is not installed; install it with:  sudo apt-get install -y wrk   (using the Python client now)")
        return None
    print("Installing wrk from Debian (apt-get install -y wrk) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(cmd, env=env, capture_output=True)
    return shutil.which("wrk")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def established_inodes(port: int) -> set[int]:
    """Socket inodes of the server side of established loopback TCP connections on `port`."""
    inodes = set()
    try:
        with open("/proc/net/tcp") as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(cols[9]))
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return inodes


def connections_of(pid: int, inodes: set[int]) -> int:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    n = 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            n += 1
    return n


class ServerCPU(CpuSampler):
    """CPU seconds used by the gunicorn master and its workers during a phase, and how the client's
    keep-alive connections are spread over the workers.

    The spread matters: a gthread worker keeps the connections it accepted, and with the GIL one worker
    uses at most one core, so a lopsided spread (say 15/1) leaves a core idle whatever the code does."""

    every = 0.2

    def __init__(self, master_pid: int, port: int) -> None:
        super().__init__()
        self.master = master_pid
        self.port = port
        self.spreads: list[tuple[int, ...]] = []
        self.ticks = 0

    def name_of(self, pid: int, ppid: int, pgid: int) -> str | None:
        return "gunicorn" if self.master in (pid, ppid) else None

    def tick(self) -> None:
        super().tick()
        self.ticks += 1
        if self.ticks % 5 == 0:  # once a second: connections per live worker, busiest first
            inodes = established_inodes(self.port)
            workers = [pid for pid in self.seen if pid != self.master and os.path.exists(f"/proc/{pid}")]
            spread = tuple(sorted((connections_of(pid, inodes) for pid in workers), reverse=True))
            if sum(spread):
                self.spreads.append(spread)

    @property
    def spread(self) -> str:
        """The most common spread of connections over workers during the phase, e.g. "12/4"."""
        if not self.spreads:
            return "?"
        common = max(set(self.spreads), key=self.spreads.count)
        return "/".join(str(n) for n in common)

    @property
    def seconds(self) -> float:
        return sum(self.used().values())


def run_wrk(wrk: str, hub: Hub, phase: Phase, body_file: Path | None, args: argparse.Namespace) -> None:
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{phase.duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        hub.url,
        "--",
        phase.name,
        str(body_file or "-"),
        str(phase.per_request),
        AUTH,
        "1" if args.message_ids else "0",
        uuid.uuid4().hex[:8],
    ]
    before = children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=phase.duration + 60)
    phase.client_cpu_s = children_cpu() - before
    match = re.search(r"^BENCH_RESULT (\{.*\})$", proc.stdout, re.M)
    if proc.returncode or not match:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    phase.result = json.loads(match.group(1))


def _py_client_worker(url: str, mode: str, body: bytes, per_request: int, seconds: float, conns: int, out) -> None:
    """One process of the fallback client: `conns` threads, each with its own keep-alive connection."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    lock = threading.Lock()
    totals = {"sent": 0, "ok": 0, "accepted_events": 0, "duplicates": 0, "rejected_events": 0, "errors": 0}
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def loop() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        local_lat = []
        headers = {"Content-Type": "application/json", "Authorization": AUTH}
        path = {"floor": "/healthz", "single": "/v1/track", "batch": "/v1/batch"}[mode]
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                with lock:
                    totals["sent"] += 1
                if mode == "floor":
                    conn.request("GET", path)
                else:
                    conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    totals["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                continue
            local_lat.append(time.perf_counter() - t0)
            with lock:
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
                if resp.status == 200:
                    totals["ok"] += 1
                    if mode != "floor":
                        reply = json.loads(data)
                        dup = reply.get("duplicates", 1 if reply.get("duplicate") else 0)
                        acc = reply.get("accepted", per_request - dup)
                        totals["accepted_events"] += acc
                        totals["duplicates"] += dup
                        totals["rejected_events"] += per_request - acc - dup
        conn.close()
        with lock:
            latencies.extend(local_lat)

    workers = [threading.Thread(target=loop) for _ in range(conns)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.put({**totals, "statuses": statuses, "latencies": latencies})


def run_python_client(hub: Hub, phase: Phase, body: bytes, args: argparse.Namespace) -> None:
    import multiprocessing as mp

    procs_n = 2
    per_proc = max(1, args.connections // procs_n)
    queue: mp.Queue = mp.Queue()
    before = time.perf_counter()
    cpu_before = os.times()
    procs = [
        mp.Process(
            target=_py_client_worker,
            args=(hub.url, phase.name, body, phase.per_request, phase.duration, per_proc, queue),
        )
        for _ in range(procs_n)
    ]
    for p in procs:
        p.start()
    parts = [queue.get(timeout=phase.duration + 60) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - before
    cpu_after = os.times()
    phase.client_cpu_s = (cpu_after.children_user - cpu_before.children_user) + (
        cpu_after.children_system - cpu_before.children_system
    )
    statuses: dict[str, int] = {}
    lat: list[float] = []
    totals = {k: 0 for k in ("sent", "ok", "accepted_events", "duplicates", "rejected_events", "errors")}
    for part in parts:
        for k in totals:
            totals[k] += part[k]
        for s, n in part["statuses"].items():
            statuses[s] = statuses.get(s, 0) + n
        lat.extend(part["latencies"])
    lat.sort()

    def pct(q: float) -> int:
        return int(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6) if lat else 0

    phase.result = {
        "mode": phase.name,
        "duration_us": int(elapsed * 1e6),
        "requests": sum(statuses.values()),
        "errors": {"connect": 0, "read": totals.pop("errors"), "write": 0, "status": 0, "timeout": 0},
        "latency_us": {
            "p50": pct(0.5),
            "p90": pct(0.9),
            "p99": pct(0.99),
            "max": pct(1.0),
            "mean": (sum(lat) / len(lat) * 1e6) if lat else 0,
        },
        **totals,
        "statuses": statuses,
    }


# ---------------------------------------------------------------------------------------------- checks


def count_rows(db_path: Path) -> tuple[dict[str, int], int]:
    """Accepted Event rows per event name, and the number of rejected rows."""
    per_name = dict(
        query(db_path, "SELECT event, COUNT(*) FROM deliveries_event WHERE status = 'accepted' GROUP BY event")
    )
    [(rejected,)] = query(db_path, "SELECT COUNT(*) FROM deliveries_event WHERE status != 'accepted'")
    return per_name, rejected


def verify(phases: list[Phase], per_name: dict[str, int], rejected_rows: int) -> list[str]:
    """Rows stored must match what the hub acknowledged, allowing only requests still in flight when
    wrk stopped (sent but never answered; the hub finishes them before it exits)."""
    problems = []
    for ph in phases:
        if ph.name == "floor":
            continue
        ph.db_events = per_name.get(ph.label, 0)
        acked = ph.result["accepted_events"]
        unanswered = ph.result["sent"] - ph.answered
        upper = acked + unanswered * ph.per_request
        if not acked <= ph.db_events <= upper:
            problems.append(
                f"{ph.label}: {ph.db_events} accepted rows in the DB but the clients were told {acked} "
                f"(+ up to {upper - acked} from {unanswered} requests in flight at the end)"
            )
        if ph.result["duplicates"]:
            problems.append(f"{ph.label}: the hub reported {ph.result['duplicates']} duplicates (none were sent)")
        if ph.result["rejected_events"]:
            problems.append(f"{ph.label}: the hub rejected {ph.result['rejected_events']} events")
    for ph in phases:
        if ph.non_2xx:
            problems.append(f"{ph.label}: NON-2xx answers {ph.non_2xx}")
        if ph.socket_errors:
            problems.append(f"{ph.label}: socket errors {ph.socket_errors}")
    if rejected_rows:
        problems.append(f"{rejected_rows} rejected Event rows were stored")
    return problems


# ---------------------------------------------------------------------------------------------- report


def fmt(n: float) -> str:
    return f"{n:,.0f}"


def report(
    phases: dict[str, Phase],
    args: argparse.Namespace,
    client: str,
    hub: Hub,
    problems: list[str],
    server_notes: list[str],
) -> dict[str, Any]:
    floor, single, batch = phases["floor"], phases["single"], phases["batch"]
    ratio = single.ok_rps / floor.ok_rps if floor.ok_rps else 0.0
    batch_pass = batch.events_per_s >= BATCH_GOAL_EVENTS_S
    single_pass = ratio >= SINGLE_GOAL_RATIO
    rows = [
        (
            "batch /v1/batch (100 ev/req)",
            f"{fmt(batch.events_per_s)} events/s",
            f">= {fmt(BATCH_GOAL_EVENTS_S)} events/s",
            "PASS" if batch_pass else "MISS",
        ),
        ("single /v1/track", f"{fmt(single.ok_rps)} req/s", "", ""),
        ("floor GET /healthz", f"{fmt(floor.ok_rps)} req/s", "", ""),
        ("single / floor", f"{ratio:.0%}", f">= {SINGLE_GOAL_RATIO:.0%} of floor", "PASS" if single_pass else "MISS"),
    ]
    workers, threads = os.environ.get("CDPHUB_WEB_WORKERS", "2"), os.environ.get("CDPHUB_WEB_THREADS", "4")
    title = (
        f"cdphub ingest benchmark  ({client}, {args.threads} client threads x {args.connections} keep-alive "
        f"connections, {args.duration:g} s per phase after {args.warmup:g} s warm-up, "
        f"{'unique messageIds' if args.message_ids else 'no messageId (hub assigns)'})\n"
        + f"server: gunicorn -c cdphub/gunicorn_conf.py {' '.join(args.gunicorn_arg)}".rstrip()
        + f"  (workers={workers}, threads={threads}, SQLite WAL)"
    )
    print_table(title, ("metric", "result", "goal", "verdict"), rows)
    print()
    print(
        "          req/s       ok  p50 ms  p90 ms  p99 ms  max ms | CPU (cores): hub  client  other  steal "
        "| hub CPU ms/req | conns/worker | DB rows (acked)"
    )
    noisy, lopsided = [], []
    for ph in (floor, single, batch):
        lat = ph.result["latency_us"]
        db = "" if ph.db_events is None else f"{ph.db_events:,} ({ph.result['accepted_events']:,})"
        cores = [x / ph.seconds for x in (ph.server_cpu_s, ph.client_cpu_s, ph.other_cpu_s, ph.steal_s)]
        per_req = ph.server_cpu_s * 1e3 / ph.result["requests"] if ph.result["requests"] else 0
        print(
            f"{ph.name:<7}{ph.rps:>8,.0f} {ph.result['ok']:>8,} {lat['p50'] / 1e3:>7.1f} {lat['p90'] / 1e3:>7.1f} "
            f"{lat['p99'] / 1e3:>7.1f} {lat['max'] / 1e3:>7.0f} |  {cores[0]:>14.2f} {cores[1]:>7.2f} "
            f"{cores[2]:>6.2f} {cores[3]:>6.2f} | {per_req:>14.2f} | {ph.spread:>12} | {db}"
        )
        counts = [int(n) for n in ph.spread.split("/") if n.isdigit()]
        if len(counts) > 1 and sum(counts) and max(counts) / sum(counts) > 0.7:
            lopsided.append(f"{ph.name} ({ph.spread})")
        if cores[2] + cores[3] > 0.15:
            noisy.append(f"{ph.name} ({cores[2]:.2f} other + {cores[3]:.2f} steal)")
    print(
        "conns/worker = wrk's keep-alive connections held by each gunicorn worker (most common sample); a worker "
        "keeps the connections it accepted and uses at most one core"
    )
    print(
        "DB rows = accepted rows stored by the phase (acked = events answered 200 to the client; any excess "
        "comes from requests in flight when wrk stopped, which the hub still completed)"
    )
    if lopsided:
        print(
            f"!! lopsided connections during {', '.join(lopsided)}: one gunicorn worker (at most one core, GIL) "
            "served most clients, so that phase used about one of the two cores (see bench/README.md)"
        )
    if noisy:
        print(
            f"!! the machine was not idle during {', '.join(noisy)} (cores used by other processes / taken by "
            "the hypervisor): the numbers are low; rerun on a quiet machine"
        )
    if client != "wrk":
        print("\nNOTE: Python client (wrk unavailable) - it competes hard for the 2 cores; numbers are pessimistic.")
    for note in server_notes:
        print(note)
    print()
    print_problems(
        "CORRECTNESS / ERROR PROBLEMS",
        problems,
        "Correctness: every stored row was acknowledged, no non-2xx answers, no socket errors, no rejected rows.",
    )
    return {
        "client": client,
        "batch_events_per_s": batch.events_per_s,
        "single_rps": single.ok_rps,
        "floor_rps": floor.ok_rps,
        "single_floor_ratio": ratio,
        "batch_goal": "PASS" if batch_pass else "MISS",
        "single_goal": "PASS" if single_pass else "MISS",
        "problems": problems,
        "phases": {
            ph.name: {
                **ph.result,
                "client_cpu_s": ph.client_cpu_s,
                "server_cpu_s": ph.server_cpu_s,
                "other_cpu_s": ph.other_cpu_s,
                "steal_s": ph.steal_s,
                "conns_per_worker": ph.spread,
                "db_events": ph.db_events,
            }
            for ph in (floor, single, batch)
        },
        "args": vars(args),
    }


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15, help="seconds measured per phase (default 15)")
    p.add_argument("--warmup", type=float, default=3, help="warm-up seconds per phase (default 3)")
    p.add_argument("--connections", "-c", type=int, default=16, help="concurrent keep-alive connections (16)")
    p.add_argument("--threads", "-t", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--batch-size", type=int, default=100, help="events per /v1/batch request (100)")
    p.add_argument(
        "--message-ids",
        action="store_true",
        help="send a unique messageId per event (built per request by the client: costs client CPU)",
    )
    p.add_argument(
        "--only",
        choices=("floor", "single", "batch"),
        action="append",
        help="(for profiling) load only these phases; the table needs all three",
    )
    p.add_argument("--python-client", action="store_true", help="use the Python client even if wrk exists")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        help="extra gunicorn argument for experiments, e.g. --gunicorn-arg=--max-requests=0",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="S",
        help="wait up to S seconds for other processes to stop using the CPU before starting",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (its path is printed)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    note_scrubbed()
    wrk = None if args.python_client else ensure_wrk(install=not args.no_install)
    client = "wrk" if wrk else "python client"
    busy = wait_for_idle(args.wait_idle)
    if busy > 0.2:
        print(
            f"!! other processes are using {busy:.2f} of {os.cpu_count()} cores right now: expect low numbers "
            f"(see the 'other' CPU column; --wait-idle S waits for a quiet machine)",
            flush=True,
        )
    data_dir = Path(tempfile.mkdtemp(prefix="cdphub-bench-"))
    hub = Hub(data_dir=data_dir, port=free_port(), extra_args=args.gunicorn_arg)
    bodies: dict[str, Path] = {}
    started = time.monotonic()
    wanted = args.only or ["floor", "single", "batch"]
    try:
        print(f"data dir {data_dir}; migrating and importing the bench source ...", flush=True)
        hub.prepare()
        hub.start()
        print(f"gunicorn up on {hub.url} (pid {hub.pid}) in {time.monotonic() - started:.1f} s", flush=True)

        def body_for(kind: str, label: str) -> Path:
            key = f"{kind}:{label}"
            if key not in bodies:
                raw = (
                    single_body(label, args.message_ids)
                    if kind == "single"
                    else batch_body(label, args.batch_size, args.message_ids)
                )
                path = data_dir / f"body-{len(bodies)}.json"
                path.write_bytes(raw)
                bodies[key] = path
            return bodies[key]

        def run(phase: Phase) -> Phase:
            body = None if phase.name == "floor" else body_for(phase.name, phase.label)
            busy, steal = cpu_counters()
            with ServerCPU(hub.pid, hub.port) as server_cpu:
                if wrk:
                    run_wrk(wrk, hub, phase, body, args)
                else:
                    run_python_client(hub, phase, body.read_bytes() if body else b"", args)
            busy_after, steal_after = cpu_counters()
            phase.system_cpu_s, phase.steal_s = busy_after - busy, steal_after - steal
            phase.server_cpu_s = server_cpu.seconds
            phase.spread = server_cpu.spread
            return phase

        per = {"floor": 1, "single": 1, "batch": args.batch_size}
        one = len(single_body("bench.single", False))
        avg = (len(batch_body("bench.batch", args.batch_size, False)) - 50) / args.batch_size
        print(f"event size: single body {one} bytes, batch {args.batch_size} events x ~{avg:.0f} bytes", flush=True)
        warm = [run(Phase(name, f"bench.warmup.{name}", per[name], args.warmup)) for name in wanted if args.warmup > 0]
        phases: dict[str, Phase] = {}
        for name in wanted:
            print(f"measuring {name} for {args.duration:g} s ...", flush=True)
            phases[name] = run(Phase(name, f"bench.{name}", per[name], args.duration))
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        hub.stop()
        _cleanup(data_dir, args.keep)
        return 2
    except BaseException:
        hub.stop()
        _cleanup(data_dir, args.keep)
        raise

    code = hub.stop()  # in-flight requests complete before the workers exit
    log = hub.log_text()
    server_notes = []
    boots = len(re.findall(r"Booting worker", log))
    if boots:
        server_notes.append(
            f"gunicorn booted {boots} workers in all (2 at start; the rest are max_requests recycling during the run)"
        )
    tracebacks = log.count("Traceback")
    if tracebacks or re.search(r"WORKER TIMEOUT|\bCRITICAL\b", log):
        server_notes.append(
            f"!! gunicorn log has {tracebacks} tracebacks / worker timeouts; last lines:\n" + hub.log_tail()
        )
    if code not in (0, None):
        server_notes.append(f"!! gunicorn exited with status {code}")
    per_name, rejected_rows = count_rows(hub.db_path)
    problems = verify([*warm, *phases.values()], per_name, rejected_rows)
    if set(phases) == {"floor", "single", "batch"}:
        summary = report(phases, args, client, hub, problems, server_notes)
    else:
        summary = {
            "phases": {n: {**p.result, "client_cpu_s": p.client_cpu_s} for n, p in phases.items()},
            "problems": problems,
        }
        for n, p in phases.items():
            print(
                f"{n}: {p.ok_rps:,.0f} ok req/s, {p.events_per_s:,.0f} events/s, "
                f"p50 {p.result['latency_us']['p50'] / 1e3:.1f} ms, hub {p.server_cpu_s / p.seconds:.2f} cores "
                f"({p.server_cpu_s * 1e3 / max(1, p.result['requests']):.2f} ms CPU/req), "
                f"other {p.other_cpu_s / p.seconds:.2f}, steal {p.steal_s / p.seconds:.2f}, conns/worker {p.spread}"
            )
        for line in server_notes + [f"!! {p}" for p in problems]:
            print(line)
    print(f"total time {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    _cleanup(data_dir, args.keep)
    return 1 if problems or any(n.startswith("!!") for n in server_notes) else 0


def _cleanup(data_dir: Path, keep: bool) -> None:
    if keep:
        print(f"kept {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
