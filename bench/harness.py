"""What the benchmarks share: the hub's processes (environment, manage.py, gunicorn and the worker as `make run`
starts them), a run's data dir and database, a percentile, a Segment track call, and the printed table of results
and list of problems (CPU read from /proc is cpu.py). Each benchmark (bench/<name>.py) imports it from its own
folder."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
# Settings that would change what is measured if inherited from the caller's shell.
SCRUBBED_ENV = (
    "CDPHUB_DATABASE_URL",
    "CDPHUB_BROKER",
    "CDPHUB_DEBUG",
    "CDPHUB_ACCESS_LOG",
    "DJANGO_SETTINGS_MODULE",
    "CDPHUB_Q_SYNC",
)


class BenchError(Exception):
    """The benchmark itself could not run (exit status 2)."""


# ---------------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_bin(name: str) -> str:
    for candidate in (ROOT / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    raise BenchError(f"{name} not found in .venv (run `make bench`, which installs it)")


def note_scrubbed(remove: bool = False) -> None:
    """Say which SCRUBBED_ENV settings of the caller the benchmark leaves out; with `remove`, take them out of this
    process's environment too (a benchmark that runs the hub's code in-process)."""
    for name in SCRUBBED_ENV:
        if os.environ.pop(name, None) if remove else os.environ.get(name):
            print(f"note: ignoring {name} from the environment (the benchmark uses its own SQLite)")


def hub_env(data_dir: Path, port: int) -> dict[str, str]:
    """The hub's environment: this one without SCRUBBED_ENV, with a data dir of the run's own and the port."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        CDPHUB_DATA_DIR=str(data_dir),
        CDPHUB_BIND=f"127.0.0.1:{port}",
        CDPHUB_ALLOW_PRIVATE_URLS="1",  # as `make run`: the receiver and the sandbox are on loopback
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([venv_bin("python"), "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


@dataclass
class Child:
    """A process of the hub (or the receiver) in a session of its own, its output in a file."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, ready: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, requests.RequestException):
                if ready():
                    return
            time.sleep(0.05)
        raise BenchError(f"{self.name}: {what} within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM the main process (a graceful stop, as systemd KillMode=mixed), then SIGKILL what is left."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"!! {self.name} did not stop within {timeout:.0f} s of SIGTERM; SIGKILL", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only its orphans, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        return code

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def start_web(data_dir: Path, env: dict[str, str], url: str, extra_args: Sequence[str] = ()) -> Child:
    """Exactly `make run`'s server, up once /healthz answers. Only gunicorn's control socket moves into the data
    dir, so that it cannot replace the one of a hub already running on this machine ($HOME/.gunicorn/)."""
    cmd = [
        venv_bin("gunicorn"),
        "-c",
        "cdphub/gunicorn_conf.py",
        "--control-socket",
        str(data_dir / "gunicorn.ctl"),
        *extra_args,
    ]
    web = Child("gunicorn", cmd, env, data_dir / "gunicorn.log")
    web.start()
    web.wait_for(lambda: requests.get(url + "/healthz", timeout=2).ok, "/healthz did not answer")
    return web


def start_worker(data_dir: Path, env: dict[str, str]) -> Child:
    """`manage.py worker`, up once it says it is."""
    worker = Child("worker", [venv_bin("python"), "manage.py", "worker"], env, data_dir / "worker.log")
    worker.start()
    worker.wait_for(lambda: "cdphub worker:" in worker.output(), "not ready")
    return worker


def query(db: Path, sql: str, *params: Any) -> list[tuple]:
    """Read the hub's SQLite database while it runs."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@dataclass
class Run:
    """One run of a benchmark against a hub of its own: the arguments, the data dir, the hub's port, and the
    results and problems found."""

    args: argparse.Namespace
    data_dir: Path
    web_port: int = field(default_factory=free_port)
    results: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return hub_env(self.data_dir, self.web_port)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def db(self) -> Path:
        return self.data_dir / "cdphub.sqlite3"

    def query(self, sql: str, *params: Any) -> list[tuple]:
        return query(self.db, sql, *params)


@dataclass
class SandboxRun(Run):
    """A run whose destinations deliver to `manage.py sandbox` (the vendor fakes) and whose processes are kept in
    `children`, stopped at the end and searched for tracebacks."""

    run: str = field(default_factory=lambda: f"{int(time.time()) % 100000}")
    sandbox_port: int = field(default_factory=free_port)
    children: list[Child] = field(default_factory=list)

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def start_sandbox(self, latency_ms: int = 0) -> None:
        cmd = [venv_bin("python"), "manage.py", "sandbox", "--port", str(self.sandbox_port)]
        sandbox = Child("sandbox", [*cmd, "--latency-ms", str(latency_ms)], self.env, self.data_dir / "sandbox.log")
        self.children.append(sandbox)
        sandbox.start()
        sandbox.wait_for(lambda: requests.get(self.sandbox_url + "/_sandbox", timeout=2).ok, "did not answer")

    def statuses(self, slug: str) -> dict[str, int]:
        """How many of destination `slug`'s deliveries are in each status."""
        return dict(
            self.query(
                "SELECT d.status, COUNT(*) FROM deliveries_delivery d JOIN integrations_destination t "
                "ON t.id = d.destination_id WHERE t.slug = ? GROUP BY d.status",
                slug,
            )
        )

    def check_logs(self) -> None:
        for child in self.children:
            if "Traceback" in child.output():
                self.problems.append(f"{child.name} logged a traceback:\n{child.tail(40)}")

    def execute(self, phases: Callable[[], None], judge: Callable[[], None] | None = None) -> int:
        """Run the phases, stop every process, keep the data dir when asked (or when the run broke), judge the
        results of a whole run, print them (and --json): 0 measured, 1 the hub misbehaved or missed a goal,
        2 the benchmark could not run."""
        code = 0
        try:
            phases()
        except BenchError as exc:
            print(f"!! the benchmark could not run: {exc}", file=sys.stderr)
            code = 2
        finally:
            for child in reversed(self.children):
                child.stop()
            if self.args.keep or code:
                print(f"data dir kept: {self.data_dir}")
            else:
                shutil.rmtree(self.data_dir, ignore_errors=True)
        if code == 0 and judge is not None:
            judge()
        if self.problems:
            print("!! " + "\n!! ".join(self.problems), file=sys.stderr)
            code = max(code, 1)
        if self.args.json:
            self.args.json.write_text(json.dumps({"results": self.results, "problems": self.problems}, indent=2))
        print(json.dumps(self.results, indent=2))
        return code


# ---------------------------------------------------------------------------------------------- results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def track_event(n: int, name: str = "Order Completed", **fields: Any) -> dict[str, Any]:
    """A typical Segment `track` call from a server-side SDK, about 450 bytes of JSON (`fields` added last)."""
    return {
        "type": "track",
        "userId": f"user-{n % 5000:05d}",
        "event": name,
        "properties": {"plan": "pro", "revenue": 19.99, "currency": "USD", "items": 3, "coupon": "SPRING24"},
        "context": {
            "library": {"name": "analytics-python", "version": "2.3.2"},
            "ip": "203.0.113.7",
            "locale": "en-US",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "page": {"path": "/pricing", "url": "https://www.example.com/pricing?ref=bench"},
        },
        **fields,
    }


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> None:
    """The results as a table of aligned columns under a title (the `right` columns aligned right)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print()
    print(title)
    print(line)
    for row in [header, *rows]:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip())
        if row is header:
            print(line)
    print(line)


def print_problems(heading: str, problems: Sequence[str], none: str) -> None:
    """The problems under a banner that stands out in a long log, or the sentence saying there are none."""
    if problems:
        print("!" * 78)
        print(f"!! {heading}:")
        for problem in problems:
            print(f"!!   {problem}")
        print("!" * 78)
    else:
        print(none)
