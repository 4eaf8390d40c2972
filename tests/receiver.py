"""A real HTTP receiver for delivery tests: a threaded server on 127.0.0.1 that records every request.

    with Receiver() as receiver:
        receiver.url                        # http://127.0.0.1:<port>/hook
        receiver.down(); receiver.up()      # stop listening (connections refused), listen again on the same port
        receiver.fail(0.3, seed=7)          # 30% of requests answered 5xx or 429 + Retry-After (seeded)
        receiver.answer(400, {"message": "email is required"})   # every request answered so (None: normal)
        receiver.delay = 10                 # seconds before answering
        receiver.requests                   # every request: headers, JSON body, time received, status answered
        receiver.successes                  # Counter: messageId -> 2xx answers actually written

Behaviour can change at any time from the test thread; everything is guarded by one lock.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any  # the JSON body, or None when it was not JSON
    received_at: float  # time.time()
    status: int | None = None  # what was answered (None while the answer is pending or when it could not be written)
    answered_at: float | None = None

    def message_ids(self) -> list[str]:
        """The messageIds in the body: one event, or each item of a {"batch": [...]} body."""
        items = self.body.get("batch", [self.body]) if isinstance(self.body, dict) else []
        return [item["messageId"] for item in items if isinstance(item, dict) and "messageId" in item]


@dataclass
class _Plan:
    status: int | None = None  # fixed status for every request
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    failure_rate: float = 0.0
    retry_after: str = "1"
    delay: float = 0.0
    random: random.Random = field(default_factory=lambda: random.Random(0))


FAILURES = (500, 502, 503, 429)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64


class Receiver:
    """A webhook endpoint under the test's control; a context manager (starts listening on enter)."""

    def __init__(self, path: str = "/hook") -> None:
        self.path = path
        self.port = 0
        self._lock = threading.Lock()
        self._plan = _Plan()
        self._requests: list[Received] = []
        self._successes: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()  # wakes delayed answers when the server goes down
        self._arrived = threading.Condition(self._lock)

    # Life cycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Receiver:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def up(self) -> None:
        """Listen (again): the first time on a free port, afterwards on the same port as before."""
        if self._server is not None:
            return
        handler = type("Handler", (_Handler,), {"receiver": self})
        deadline = time.monotonic() + 10
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), handler)
                break
            except OSError:  # the old socket may linger a moment
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = server.server_address[1]
        self._closing.clear()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: new connections are refused until up(); delayed answers are cut short."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()
        server.shutdown()
        server.server_close()
        if self._thread:
            self._thread.join(5)
        # Make sure the port really refuses before returning (close is synchronous, this is a cheap check).
        with socket.socket() as probe:
            probe.settimeout(0.5)
            assert probe.connect_ex(("127.0.0.1", self.port)) != 0, "the receiver is still listening"

    def down_for(self, seconds: float) -> threading.Timer:
        """Go down now and come back up on the same port after `seconds` (in a timer thread)."""
        self.down()
        timer = threading.Timer(seconds, self.up)
        timer.daemon = True
        timer.start()
        return timer

    # Behaviour -------------------------------------------------------------------------------------

    def fail(self, rate: float, *, seed: int = 0, retry_after: str = "1") -> None:
        """Answer this share of requests with a 500, 502, 503 or 429 (with Retry-After), chosen by a seeded random."""
        with self._lock:
            self._plan.failure_rate = rate
            self._plan.retry_after = retry_after
            self._plan.random = random.Random(seed)

    def answer(self, status: int | None, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer every request with this status, JSON body and headers (status None: back to normal)."""
        with self._lock:
            self._plan.status = status
            self._plan.body = body
            self._plan.headers = dict(headers or {})

    @property
    def delay(self) -> float:
        return self._plan.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        with self._lock:
            self._plan.delay = seconds

    def _decide(self) -> tuple[int, Any, dict[str, str], float]:
        with self._lock:
            plan = self._plan
            if plan.status is not None:
                return plan.status, plan.body, dict(plan.headers), plan.delay
            if plan.failure_rate and plan.random.random() < plan.failure_rate:
                status = plan.random.choice(FAILURES)
                headers = {"Retry-After": plan.retry_after} if status == 429 else {}
                return status, {"message": f"simulated {status}"}, headers, plan.delay
            return 200, {"ok": True}, {}, plan.delay

    # What was received -----------------------------------------------------------------------------

    def _record(self, received: Received) -> None:
        with self._arrived:
            self._requests.append(received)
            self._arrived.notify_all()

    def _answered(self, received: Received, status: int, taken_back: bool = False) -> None:
        with self._lock:
            received.status = None if taken_back else status
            received.answered_at = None if taken_back else time.time()
            if 200 <= status < 300:
                (self._successes.subtract if taken_back else self._successes.update)(received.message_ids())
                if taken_back:
                    self._successes += Counter()  # drop the ids that went back to zero

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def successes(self) -> Counter[str]:
        """messageId -> how many 2xx answers were written for it."""
        with self._lock:
            return Counter(self._successes)

    def duplicates(self) -> dict[str, int]:
        """messageIds answered 2xx more than once."""
        return {k: v for k, v in self.successes.items() if v > 1}

    def wait_for_requests(self, count: int, timeout: float = 10) -> list[Received]:
        """Block until at least `count` requests have arrived (answered or not); return them."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} requests arrived within {timeout} s, not {count}")
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._successes.clear()


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver
    protocol_version = "HTTP/1.0"  # one request per connection: nothing survives down()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        received = Received(self.command, self.path, dict(self.headers.items()), raw, body, time.time())
        self.receiver._record(received)
        status, answer, headers, delay = self.receiver._decide()
        if delay and self.receiver._closing.wait(delay):
            return  # went down while waiting: drop the connection without an answer
        payload = json.dumps(answer).encode() if answer is not None else b""
        # Counted before the answer goes out, so a client that has read it always finds it counted; taken
        # back when the answer cannot be written.
        self.receiver._answered(received, status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.receiver._answered(received, status, taken_back=True)  # the client went away: not an answer

    do_POST = do_PUT = do_GET = _handle
