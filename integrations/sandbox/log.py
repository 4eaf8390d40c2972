"""The received log: every request the sandbox answered, with its secrets redacted before it is kept."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Collection
from typing import Any

from integrations.sandbox.wire import Request, Response, redact, redact_headers

LIMIT = 20_000


class ReceivedLog:
    """The newest LIMIT requests, oldest first; every handler thread adds to it, tests and /_sandbox read it."""

    def __init__(self, secret_maps: Collection[str]) -> None:
        self.secret_maps = secret_maps  # settings whose values are secrets, redacted in POST /_sandbox/config bodies
        self.lock = threading.Lock()
        self.entries: deque[dict[str, Any]] = deque(maxlen=LIMIT)

    def add(self, service: str, req: Request, headers: dict[str, str], response: Response) -> None:
        # Reads of the control endpoint keep no answer: /_sandbox/received would copy the log into itself.
        kept = None if service == "control" and req.method == "GET" else response.body
        entry = {
            "service": service,
            "method": req.method,
            "path": req.path,
            "query": redact(req.query),
            "headers": redact_headers(headers),
            "body": req.logged_body(self.secret_maps),
            "status": response.status,
            "response": redact(kept, self.secret_maps),
            "at": time.time(),
        }
        with self.lock:
            self.entries.append(entry)

    def select(self, service: str | None = None, path_contains: str | None = None) -> list[dict[str, Any]]:
        """The entries of one service, or whose path contains a string, or all."""
        with self.lock:
            return [
                entry
                for entry in self.entries
                if (service is None or entry["service"] == service)
                and (path_contains is None or path_contains in entry["path"])
            ]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
