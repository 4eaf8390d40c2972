"""The sandbox's socket side: HTTP/1.1 with keep-alive on daemon threads, each request read into a `Request`.

Apart from server.py so that the sandbox's own logic (fakes, settings, controls) reads without the plumbing of
threads, chunked bodies and cutting kept-alive connections at stop.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from integrations.sandbox.wire import Request, Response

MAX_READ = 32 * 1024 * 1024  # bodies past this are refused unread; Marketo's own 1 MB limit answers 413 sooner


class Owner(Protocol):
    """Who answers and logs the requests (the Sandbox)."""

    def dispatch(self, req: Request) -> tuple[str, Response]: ...

    def record(self, service: str, req: Request, headers: dict[str, str], response: Response) -> None: ...


class Listener:
    """One listening socket served on a daemon thread until `stop`."""

    def __init__(self, host: str, port: int, owner: Owner) -> None:
        self.connections: set[socket.socket] = set()  # open (kept-alive) client connections, cut by stop()
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"owner": owner, "listener": self})
        self.server = _Server((host, port), handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="sandbox", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop listening and cut kept-alive connections, so nothing is answered after this returns."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self.connections.clear()
        self.thread.join(5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    owner: Owner
    listener: Listener
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "cdphub-sandbox/1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle holds the body for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.listener.lock:
            self.listener.connections.add(self.connection)

    def finish(self) -> None:
        with self.listener.lock:
            self.listener.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the received log is the record

    def read_body(self) -> bytes | None:
        """The request body (chunked or sized), or None when it is too big to read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                if sum(map(len, chunks)) + size > MAX_READ:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return None if length > MAX_READ else self.rfile.read(length) if length > 0 else b""

    def handle_one(self) -> None:
        try:
            raw = self.read_body()
        except ValueError:
            raw = None
        target = urlsplit(self.path)
        headers = dict(self.headers.items())
        req = Request(
            method=self.command,
            path=unquote(target.path),
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in headers.items()},
            raw=raw or b"",
            uri_length=len(self.path),
        )
        if raw is None:
            self.close_connection = True  # the unread body would be taken for the next request
            service, response = "control", Response(413, {"error": "Request body too large or malformed."})
        else:
            try:
                service, response = self.owner.dispatch(req)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                service, response = "control", Response(500, {"error": f"sandbox bug: {exc!r}"})
        self.owner.record(service, req, headers, response)  # before answering: a client that has read it finds it
        payload = response.encode()
        try:
            self.send_response(response.status, "Service Not Found" if response.status == 596 else None)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client went away

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one
