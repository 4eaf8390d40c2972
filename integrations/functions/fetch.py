"""`fetch` for functions, made by the host: the vendors' HTTP client (the private-address guard, proxies, a
timeout, the sandbox's routing) and each call recorded as an exchange on the attempt, secrets redacted.

A refused address ends the invocation (the code may not catch its way past the guard); a time-out or a
connection error rejects the fetch's promise as node-fetch does, so `catch → throw new RetryError()` works.
With `send=False` (Run test's "record, don't send") nothing leaves the hub: each call is recorded and answered
with an empty 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from integrations.vendors.http import SECRET_KEYS, HttpClient
from integrations.vendors.results import DeliveryError

GUARDED = {"private_address", "invalid_url"}  # refusals that end the invocation rather than reject one call
BODY_LIMIT = 5 * 1024 * 1024  # characters of a response body handed to the code


@dataclass
class Answer:
    response: dict[str, Any] | None = None  # {status, statusText, headers, body, url} for the JavaScript Response
    message: str = ""  # why the call failed (rejects the promise)
    fatal: bool = False  # ends the invocation
    code: str = ""


class Fetcher:
    """The host side of `fetch` for one function user; keeps the HTTP session (and its connections) warm."""

    def __init__(self, secrets: list[str], timeout: float = 10.0, *, send: bool = True) -> None:
        self.http = HttpClient(timeout, secrets)
        self.timeout = timeout
        self.send = send

    def redact(self, text: str) -> str:
        return self.http.redact_text(text)

    def take_exchanges(self) -> list[dict[str, Any]]:
        return self.http.take_exchanges()

    def fetch(self, call: dict[str, Any], deadline: float) -> Answer:
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return Answer(fatal=True, code="function_timeout", message="the function ran out of time waiting for fetch")
        headers = {str(k): str(v) for k, v in (call.get("headers") or {}).items()}
        body = call.get("body")
        if not self.send:
            return self._recorded(call, headers, body)
        self.http.timeout = min(self.timeout, remaining)
        try:
            response = self.http.request(
                call["method"], call["url"], headers=headers, data=body.encode() if isinstance(body, str) else None
            )
        except DeliveryError as exc:
            if exc.code in GUARDED:
                return Answer(fatal=True, code=exc.code, message=f"fetch refused: {exc.message}")
            return Answer(message=exc.message, code=exc.code)
        finally:
            self.http.timeout = self.timeout
        text = response.text
        self._learn_issued_secrets(text)
        return Answer(
            response={
                "status": response.status_code,
                "statusText": response.reason or "",
                "headers": dict(response.headers.items()),
                "body": text[:BODY_LIMIT],
                "url": call["url"],
            }
        )

    def _recorded(self, call: dict[str, Any], headers: dict[str, str], body: Any) -> Answer:
        self.http.exchanges.append(
            {
                "request": {
                    "method": call["method"],
                    "url": self.http.redact_text(call["url"]),
                    "headers": self.http.redact_headers(headers),
                    "body": self.http.redact_body(body),
                },
                "response": {"status": 200, "headers": {}, "body": "{}"},
                "note": "not sent: Run test recorded this call and answered it with an empty 200",
                "duration_ms": 0,
            }
        )
        return Answer(response={"status": 200, "statusText": "OK", "headers": {}, "body": "{}", "url": call["url"]})

    def _learn_issued_secrets(self, text: str) -> None:
        """An access token a vendor issued is a secret from now on: redacted if the code logs it or sends it."""
        if not text or text[0] != "{" or len(text) > 65536:
            return
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and SECRET_KEYS.search(key):
                    self.http.add_secret(value)
