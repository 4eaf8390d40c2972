"""A fault run: the hub's real processes (gunicorn, `manage.py worker`) under a steady stream of events while
they are killed, the database and Redis restart and the receiver goes down or fails; then what was promised is
checked. Used by tests/e2e/test_faults.py (bounded) and bench/faults.py (the long version, and the figures).

    plan = Plan(events=2000, rate=150, web_workers=2, workers=2, kill_worker_every=10, restart_database_at=0.5)
    with Receiver() as receiver:
        run = FaultRun(plan, database_url, broker_url, data_dir, receiver, services=Services.from_env())
        report = run.execute()          # offers, faults, settles, checks; stops every process it started
    report.problems                     # what broke a promise (empty: none)
    report.figures                      # events offered, 2xx, 503s, delivered, duplicates at the receiver ...

What is promised (issue 14, "Faults to survive"): every event the API answered 2xx for is stored and arrives at
the receiver; the success log (Attempt rows `delivered`) has each messageId once; duplicates at the receiver are
allowed (delivery is at least once) and counted; no delivery is left in flight; a request refused while the
database restarts gets a 503 with Retry-After, never a 500. The sender behaves as an SDK does: it sends a refused
or unanswered request again after a moment, so every event offered is stored in the end.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests

from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
WRITE_KEY = "wk_faults"
BATCH_SIZE = 10  # events per /v1/batch; the stream alternates a batch and a single /v1/track
# The engine's timings shortened, so that retries, leases and the sweeper act within seconds (as in the worker's
# end-to-end tests), and the destination's timeout too: a killed worker's deliveries are taken back when their
# lease (3 x timeout + margin = 8 s) ends, its concurrency slot when the slot's (drain + 2 x timeout + margin) does.
ENGINE_ENV = {
    "CDPHUB_DRAIN_SECONDS": "2",
    "CDPHUB_RETRY_BASE_SECONDS": "0.2",
    "CDPHUB_RETRY_CAP_SECONDS": "2",  # while the receiver is down, ~1,000 deliveries retry every 1-2 s
    "CDPHUB_SWEEP_SECONDS": "0.5",
    "CDPHUB_LEASE_MARGIN_SECONDS": "2",
    "CDPHUB_QUEUE_LEASE_SECONDS": "5",
    # The circuit breaker stays on (the receiver's outage opens it), but probes within seconds, not after 30 s.
    "CDPHUB_CIRCUIT_PROBE_SECONDS": "1",
    "CDPHUB_CIRCUIT_PROBE_CAP_SECONDS": "4",
}
DESTINATION_TIMEOUT = 2
SCRUBBED_ENV = ("CDPHUB_DATABASE_URL", "CDPHUB_BROKER", "DJANGO_SETTINGS_MODULE", "CDPHUB_Q_SYNC", "CDPHUB_DEBUG")


@dataclass
class Plan:
    """What to offer and which faults to cause; times `..._at` are fractions of the offering period."""

    events: int = 2000
    rate: float = 150.0  # events offered per second
    web_workers: int = 2
    workers: int = 2  # `manage.py worker` processes
    # Delivery processes of each (CDPHUB_WORKERS). A destination gets at most this less one concurrency slots, on
    # every worker together (deliveries/engine/slots.py): 3 gives the receiver two drains at a time.
    cluster_workers: int = 3
    kill_worker_every: float = 10.0  # seconds; 0: never
    kill_web_at: float | None = None
    restart_database_at: float | None = None
    restart_redis_at: float | None = None
    receiver_down_at: float | None = 0.3
    receiver_down_for: float = 10.0
    failure_rate: float = 0.3  # of the receiver's answers: 500, 502, 503 or 429 with Retry-After
    # Events per webhook call. A 429's Retry-After (1 s) holds the whole destination, so with 30% failures (a
    # quarter of them 429s) one event per call is ~13 calls/s: too slow to settle a backlog within the test.
    batch_size: int = 50
    settle_timeout: float = 60.0
    senders: int = 4


# Issue 14's run: 20,000 events through /v1/batch and /v1/track, a worker killed every 10 s, a gunicorn worker
# killed, PostgreSQL and Redis restarted, the receiver down for 60 s, 30% 5xx/429 (bench/faults.py).
FULL = Plan(
    events=20_000,
    rate=150,
    kill_worker_every=10,
    kill_web_at=0.3,
    restart_database_at=0.5,
    restart_redis_at=0.7,
    receiver_down_at=0.2,
    receiver_down_for=60,
    settle_timeout=300,
)
# The same on SQLite: one web and one worker process, the worker killed, the receiver down.
FULL_SQLITE = replace(FULL, web_workers=1, workers=1, kill_web_at=None, restart_database_at=None, restart_redis_at=None)


@dataclass
class Services:
    """How PostgreSQL and Redis were started (tests/services.sh exports it), to restart them the same way."""

    pg_bin: str = ""
    pg_data: str = ""
    redis_port: int = 0

    @classmethod
    def from_env(cls) -> Services:
        return cls(
            os.environ.get("CDPHUB_TEST_PGBIN", ""),
            os.environ.get("CDPHUB_TEST_PGDATA", ""),
            int(os.environ.get("CDPHUB_TEST_REDISPORT") or 0),
        )

    def restart_database(self) -> float:
        """`pg_ctl restart -m fast` (every connection cut, the server down until it is up again); seconds taken."""
        if not (self.pg_bin and self.pg_data):
            raise RuntimeError("CDPHUB_TEST_PGBIN / CDPHUB_TEST_PGDATA unset: run under tests/services.sh")
        command = f"{self.pg_bin}/pg_ctl -D {self.pg_data} -m fast -w restart >/dev/null"
        started = time.monotonic()
        as_postgres(command)
        return time.monotonic() - started

    def restart_redis(self) -> float:
        """Redis shut down without saving (every queued task lost) and started again as services.sh starts it."""
        if not self.redis_port:
            raise RuntimeError("CDPHUB_TEST_REDISPORT unset: run under tests/services.sh")
        port = str(self.redis_port)
        started = time.monotonic()
        subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True, timeout=30)
        time.sleep(0.5)  # really down for a moment
        subprocess.run(
            [
                "redis-server",
                "--port",
                port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        )
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True).stdout.strip() == b"PONG":
                break
            time.sleep(0.05)
        return time.monotonic() - started


def as_postgres(command: str) -> None:
    """Run a PostgreSQL server command as the postgres user when root (the server refuses to run as root)."""
    argv = ["su", "postgres", "-s", "/bin/sh", "-c", command] if os.getuid() == 0 else ["sh", "-c", command]
    subprocess.run(argv, check=True, timeout=120)


class Database:
    """SQL on the hub's database with a fresh connection per call: it survives the restarts the run causes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:")

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        for attempt in range(30):
            try:
                return self._rows(sql, params)
            except (psycopg.OperationalError, sqlite3.OperationalError):
                if attempt == 29:
                    raise
                time.sleep(0.5)  # restarting, or locked a moment
        return []

    def _rows(self, sql: str, params: tuple) -> list[tuple]:
        if self.sqlite:
            path = "/" + urlsplit(self.url).path.lstrip("/")  # sqlite:////abs/path
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
            finally:
                conn.close()
        with psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def statuses(self) -> dict[str, int]:
        return dict(self.rows("SELECT status, COUNT(*) FROM deliveries_delivery GROUP BY status"))


@dataclass
class Process:
    """One process of the hub in a process group of its own, its output in a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, ready: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            with contextlib.suppress(OSError, requests.RequestException):
                if ready():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {what} within {timeout:.0f} s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """kill -9 of the whole group: the process and its children (a worker's cluster) die at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.kill()


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{name}: {value}" for name, value in self.figures.items()]
        lines += [f"  {entry}" for entry in self.timeline]
        lines += [f"PROBLEM: {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass
class Answers:
    """What the API answered, by status, and the messageIds it acknowledged with a 2xx (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer (connection cut, timeout)
    acknowledged: set[str] = field(default_factory=set)
    refused_without_retry_after: int = 0
    unexpected: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)  # messageIds never acknowledged within the run

    def note(self, status: int, response: requests.Response | None, ids: list[str]) -> None:
        with self.lock:
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.acknowledged.update(ids)
            elif status == 503 and response is not None and not response.headers.get("Retry-After"):
                self.refused_without_retry_after += 1
            elif status not in (0, 503) and len(self.unexpected) < 20 and response is not None:
                self.unexpected.append(f"{status} {response.text[:300]}")


class FaultRun:
    def __init__(
        self,
        plan: Plan,
        database_url: str,
        broker_url: str,
        data_dir: Path,
        receiver: Receiver,
        services: Services | None = None,
        migrate: bool = False,
    ) -> None:
        self.plan = plan
        self.database_url = database_url
        self.broker_url = broker_url
        self.data_dir = data_dir
        self.receiver = receiver
        self.services = services or Services()
        self.migrate = migrate
        self.db = Database(database_url)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web: Process | None = None
        self.workers: list[Process] = []
        self.retired: list[Process] = []  # killed workers, for their logs
        self.answers = Answers()
        self.report = Report()
        self.started = 0.0
        self._worker_number = itertools.count(1)

    # ---- the hub's processes

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(
            DJANGO_SETTINGS_MODULE="cdphub.settings",  # the settings `make run` serves with, not the test settings
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            CDPHUB_DATA_DIR=str(self.data_dir),
            CDPHUB_DATABASE_URL=self.database_url,
            CDPHUB_BIND=f"127.0.0.1:{self.port}",
            CDPHUB_WEB_WORKERS=str(self.plan.web_workers),
            CDPHUB_WORKERS=str(self.plan.cluster_workers),
            CDPHUB_ALLOW_PRIVATE_URLS="1",
            **ENGINE_ENV,
        )
        if self.broker_url:
            env["CDPHUB_BROKER"] = self.broker_url
        return env

    def manage(self, *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if proc.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")

    def configure(self) -> None:
        if self.migrate:
            self.manage("migrate", "--noinput", "-v0")
        workspace = {
            "sources": [{"slug": "faults", "name": "Faults", "kind": "http", "write_key": WRITE_KEY}],
            "destinations": [
                {
                    "slug": "counting-receiver",
                    "name": "Counting receiver",
                    "vendor": "webhook",
                    "sources": ["faults"],
                    "config": {"url": self.receiver.url, "batch_size": self.plan.batch_size},
                    "timeout": DESTINATION_TIMEOUT,  # the rate limit is the webhook vendor's default: adaptive
                }
            ],
        }
        path = self.data_dir / "faults-workspace.json"
        path.write_text(json.dumps(workspace))
        self.manage("import_workspace", str(path))

    def start_web(self) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        argv = [gunicorn, "-c", "cdphub/gunicorn_conf.py", "--control-socket", str(self.data_dir / "gunicorn.ctl")]
        self.web = Process("gunicorn", argv, self.env, self.data_dir / "gunicorn.log").start()
        self.web.wait_for(lambda: requests.get(self.url + "/healthz", timeout=2).ok, "/healthz did not answer")

    def start_worker(self, wait: bool = True) -> Process:
        number = next(self._worker_number)
        argv, log = [sys.executable, "manage.py", "worker"], self.data_dir / f"worker-{number}.log"
        worker = Process(f"worker-{number}", argv, self.env, log).start()
        self.workers.append(worker)
        if wait:
            worker.wait_for(lambda: "cdphub worker:" in worker.output(), "not ready")
        return worker

    def web_workers(self) -> list[int]:
        """The pids of gunicorn's worker processes (children of the master)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.web.proc.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    # ---- the stream of events

    def offer(self) -> None:
        """Offer plan.events at plan.rate per second, alternately a batch and a single track, from a few threads;
        a refused or unanswered request is sent again (as an SDK does) until answered 2xx or the run ends."""
        plan = self.plan
        requests_list: list[tuple[str, list[str]]] = []
        offered = 0
        for n in itertools.count():
            if offered >= plan.events:
                break
            size = 1 if n % 2 else min(BATCH_SIZE, plan.events - offered)
            ids = [f"f-{offered + i}" for i in range(size)]
            requests_list.append(("/v1/track" if size == 1 and n % 2 else "/v1/batch", ids))
            offered += size
        due_at = []
        t = 0.0
        for _, ids in requests_list:
            due_at.append(t)
            t += len(ids) / plan.rate
        self.offer_seconds = t
        next_index = itertools.count()
        give_up_at = self.started + t + plan.settle_timeout / 2

        def sender() -> None:
            session = requests.Session()
            headers = {"Content-Type": "application/json"}
            while True:
                i = next(next_index)
                if i >= len(requests_list):
                    return
                wait = self.started + due_at[i] - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                path, ids = requests_list[i]
                self.send(session, path, ids, headers, give_up_at)

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(plan.senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def send(self, session: requests.Session, path: str, ids: list[str], headers: dict, give_up_at: float) -> None:
        events = [
            {
                "type": "track",
                "userId": f"user-{m[2:]}",
                "event": "Order Completed",
                "messageId": m,
                "properties": {"total": 10},
            }
            for m in ids
        ]
        body = {"batch": events} if path == "/v1/batch" else events[0]
        while True:
            response = None
            try:
                response = session.post(self.url + path, json=body, headers=headers, auth=(WRITE_KEY, ""), timeout=10)
                status = response.status_code
            except requests.RequestException:
                status = 0
                session = requests.Session()  # a killed web worker's keep-alive connection is gone
            self.answers.note(status, response, ids)
            if 200 <= status < 300:
                return
            if status not in (0, 503) or time.monotonic() > give_up_at:
                with self.answers.lock:
                    self.answers.given_up.extend(ids)
                return
            retry_after = float(response.headers.get("Retry-After", 1)) if response is not None else 0.5
            time.sleep(min(retry_after, 1.0))  # an SDK waits longer; the run has to stay short

    # ---- faults

    def faults(self, stop: threading.Event) -> None:
        """Cause the plan's faults on a timeline over the offering period."""
        plan = self.plan
        at = {  # seconds after the start -> what to do
            "kill a web worker": plan.kill_web_at,
            "restart the database": plan.restart_database_at,
            "restart Redis": plan.restart_redis_at,
            "receiver down": plan.receiver_down_at,
        }
        pending = {name: self.offer_seconds * f for name, f in at.items() if f is not None}
        next_kill = plan.kill_worker_every or None
        receiver_up_at = None
        while not stop.wait(0.1):
            now = time.monotonic() - self.started
            for name, when in sorted(pending.items(), key=lambda item: item[1]):
                if now >= when:
                    del pending[name]
                    self.cause(name)
                    if name == "receiver down":
                        receiver_up_at = now + plan.receiver_down_for
            if receiver_up_at is not None and now >= receiver_up_at:
                self.receiver.up()
                self.note("receiver up")
                receiver_up_at = None
            if next_kill is not None and now >= next_kill and now < self.offer_seconds:
                self.kill_a_worker()
                next_kill += plan.kill_worker_every
        if receiver_up_at is not None:
            self.receiver.up()
            self.note("receiver up")

    def cause(self, name: str) -> None:
        if name == "kill a web worker":
            pids = self.web_workers()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.note(f"kill -9 of gunicorn worker {pids[0]}")
        elif name == "restart the database":
            self.note("pg_ctl restart -m fast ...")
            self.note(f"database back after {self.services.restart_database():.1f} s")
        elif name == "restart Redis":
            self.note(f"Redis restarted (nosave) in {self.services.restart_redis():.1f} s")
        elif name == "receiver down":
            self.receiver.down()
            self.note(f"receiver down for {self.plan.receiver_down_for:g} s")

    def kill_a_worker(self) -> None:
        victim = self.workers.pop(0)
        victim.kill()
        self.retired.append(victim)
        replacement = self.start_worker(wait=False)
        self.note(f"kill -9 of {victim.name} (pid {victim.proc.pid}), {replacement.name} started")

    def note(self, what: str) -> None:
        self.report.timeline.append(f"{time.monotonic() - self.started:6.1f} s  {what}")

    # ---- the run

    def execute(self) -> Report:
        run_started = time.monotonic()
        try:
            self.configure()
            workers = [self.start_worker(wait=False) for _ in range(self.plan.workers)]  # start while gunicorn does
            self.start_web()
            for worker in workers:
                worker.wait_for(lambda worker=worker: "cdphub worker:" in worker.output(), "not ready")
            self.receiver.fail(self.plan.failure_rate, seed=14, retry_after="1")
            self.started = time.monotonic()
            self.report.figures["setup_s"] = round(self.started - run_started, 1)
            stop = threading.Event()
            self.offer_seconds = self.plan.events / self.plan.rate
            fault_thread = threading.Thread(target=self.faults, args=(stop,), daemon=True)
            fault_thread.start()
            self.offer()
            stop.set()
            fault_thread.join(120)
            self.note(f"offering done ({len(self.answers.acknowledged)} acknowledged)")
            self.settle()
            self.check()
        finally:
            for process in [*self.workers, self.web]:
                if process is not None:
                    process.stop()
        self.report.figures["duration_s"] = round(time.monotonic() - run_started, 1)
        self.check_logs()
        return self.report

    def settle(self) -> None:
        """Wait until every delivery has an outcome (nothing pending, retrying or in flight)."""
        deadline = time.monotonic() + self.plan.settle_timeout
        busy = ("pending", "retrying", "in_flight")
        self.max_in_flight_left = 0
        while True:
            counts = self.db.statuses()
            if not any(counts.get(s) for s in busy):
                self.note(f"settled: {counts}")
                return
            if time.monotonic() > deadline:
                self.max_in_flight_left = counts.get("in_flight", 0)
                self.report.problems.append(f"not settled within {self.plan.settle_timeout:g} s: {counts}")
                return
            time.sleep(0.25)

    def check(self) -> None:
        answers, figures, problems = self.answers, self.report.figures, self.report.problems
        stored = {m for (m,) in self.db.rows("SELECT message_id FROM deliveries_event WHERE status = 'accepted'")}
        delivered_log = Counter(
            dict(
                self.db.rows(
                    "SELECT e.message_id, COUNT(*) FROM deliveries_attempt a "
                    "JOIN deliveries_delivery d ON d.id = a.delivery_id JOIN deliveries_event e ON e.id = d.event_id "
                    "WHERE a.outcome = 'delivered' GROUP BY e.message_id"
                )
            )
        )
        counts = self.db.statuses()
        successes = self.receiver.successes
        acknowledged = answers.acknowledged
        duplicates = {m: n for m, n in successes.items() if n > 1}
        figures.update(
            events_offered=self.plan.events,
            events_acknowledged_2xx=len(acknowledged),
            requests_by_status={str(k): v for k, v in sorted(answers.statuses.items())},
            refused_503=answers.statuses.get(503, 0),
            answered_500=sum(n for s, n in answers.statuses.items() if s >= 500 and s != 503),
            unanswered_requests=answers.statuses.get(0, 0),
            events_stored=len(stored),
            delivered=counts.get("delivered", 0),
            deliveries=counts,
            received_by_receiver=len(successes),
            duplicates_at_receiver=len(duplicates),
            receiver_requests=len(self.receiver.requests),
            max_in_flight_left=self.max_in_flight_left,
            offer_seconds=round(self.offer_seconds, 1),
        )
        not_stored = acknowledged - stored
        if not_stored:
            problems.append(f"{len(not_stored)} events answered 2xx are not stored, e.g. {sorted(not_stored)[:5]}")
        missing = acknowledged - set(successes)
        if missing:
            problems.append(f"{len(missing)} events answered 2xx never reached the receiver: {sorted(missing)[:5]}")
        twice = {m: n for m, n in delivered_log.items() if n > 1}
        if twice:
            problems.append(f"{len(twice)} messageIds are in the success log more than once, e.g. {list(twice)[:5]}")
        if counts.get("in_flight") or counts.get("pending") or counts.get("retrying"):
            problems.append(f"deliveries left unfinished: {counts}")
        if counts.get("failed"):
            problems.append(f"{counts['failed']} deliveries failed: {counts}")
        if figures["answered_500"] or answers.unexpected:
            problems.append(f"answers other than 2xx/503: {dict(answers.statuses)} {answers.unexpected[:3]}")
        if answers.refused_without_retry_after:
            problems.append(f"{answers.refused_without_retry_after} 503s without Retry-After")
        if answers.given_up:
            problems.append(f"{len(answers.given_up)} events were never acknowledged, e.g. {answers.given_up[:5]}")

    def check_logs(self) -> None:
        processes = [p for p in [self.web, *self.workers, *self.retired] if p is not None]
        tracebacks = {p.name: p.output().count("Traceback") for p in processes}
        self.report.figures["tracebacks_in_logs"] = {name: n for name, n in tracebacks.items() if n}
        if self.web is not None and tracebacks.get("gunicorn"):
            self.report.problems.append(f"gunicorn logged tracebacks:\n{self.web.output()[-4000:]}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
