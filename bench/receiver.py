"""A fast webhook receiver for bench/deliver.py: HTTP/1.1 keep-alive on asyncio, one process, no framework.

    .venv/bin/python bench/receiver.py [--port 0]      # prints "READY <port>" once it listens

Every POST/PUT outside /_control/ is answered 200 at once; the receiver keeps (arrival time, body) and parses
nothing until asked, so the cost per request is a few tens of microseconds of one core.

    GET  /_control/count    {"count": n}              requests received since the last reset
    GET  /_control/dump     [[arrival, [[messageId, receivedAt], ...]], ...]   one row per request, in order
    POST /_control/reset    {"count": n}              forget everything received (returns how many)

`arrival` is time.time() when the last byte of the request was read: the same clock as the hub's receivedAt.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
MAX_HEADER = 64 * 1024


class Store:
    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []

    def dump(self) -> bytes:
        rows = []
        for arrival, body in self.received:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            items = data.get("batch", [data]) if isinstance(data, dict) else []
            ids = [[i.get("messageId"), i.get("receivedAt")] for i in items if isinstance(i, dict)]
            rows.append([arrival, ids])
        return orjson.dumps(rows)


def control(store: Store, method: bytes, path: bytes) -> bytes:
    if path == b"/_control/count":
        body = orjson.dumps({"count": len(store.received)})
    elif path == b"/_control/dump":
        body = store.dump()
    elif path == b"/_control/reset" and method == b"POST":
        body = orjson.dumps({"count": len(store.received)})
        store.received = []
    else:
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Connection(asyncio.Protocol):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:  # requests may be pipelined or split over several reads
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    self.transport.close()
                return
            request_line, *headers = self.buffer[:end].split(b"\r\n")
            length = 0
            close = request_line.endswith(b"HTTP/1.0")
            for line in headers:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = request_line.split(b" ", 2)[:2]
            if path.startswith(b"/_control/"):
                self.transport.write(control(self.store, method, path))
            else:
                self.store.received.append((time.time(), body))
                self.transport.write(ANSWER)
            if close:
                self.transport.close()
                return


async def serve(port: int) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(store), "127.0.0.1", port, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
