"""A request and an answer as the sandbox's fakes see them, and the redaction applied before anything is logged."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

import orjson

JSON = "application/json; charset=utf-8"
REDACTED = "[REDACTED]"
SECRET_FIELDS = {"client_secret", "access_token"}
SECRET_IN_FORM = re.compile(r"(^|&)(client_secret|access_token)=[^&]*")


@dataclass
class Request:
    """One HTTP request: headers keyed in lower case, the query as a flat dict (last value wins)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    uri_length: int = 0

    @cached_property
    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not JSON."""
        return orjson.loads(self.raw)

    @cached_property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.raw.decode("utf-8", "replace"), keep_blank_values=True))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def bearer(self) -> str | None:
        """The token of an `Authorization: Bearer` header ("" when the header is there but empty)."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def logged_body(self, secret_maps: Collection[str] = ()) -> Any:
        """The body for the received log: parsed JSON when it parses, else text; secrets redacted."""
        if not self.raw:
            return None
        try:
            return redact(self.json, secret_maps)
        except ValueError:
            return SECRET_IN_FORM.sub(rf"\1\2={REDACTED}", self.raw.decode("utf-8", "replace"))


@dataclass
class Response:
    """An answer: a JSON body (or text, sent with `content_type`), a status and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return orjson.dumps(self.body)


def redact(value: Any, secret_maps: Collection[str] = ()) -> Any:
    """A copy of a JSON value with client secrets and access tokens replaced, at any depth.

    `secret_maps` names the keys whose value is an object of client id -> secret (the fakes' `secrets=True`
    settings, as sent to POST /_sandbox/config): the ids stay readable, the secrets do not.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED
            if key in SECRET_FIELDS
            else dict.fromkeys(item, REDACTED)
            if key in secret_maps and isinstance(item, dict)
            else redact(item, secret_maps)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, secret_maps) for item in value]
    return value


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: REDACTED if name.lower() in {"authorization", "cookie"} else value for name, value in headers.items()}
