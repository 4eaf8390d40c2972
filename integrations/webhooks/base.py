"""What every source function shares: typed settings, signature checks, and the error a webhook is refused with.

A source function turns one webhook request of a tool (Customer.io, Stripe, Zendesk, anything posting JSON)
into Segment-spec events. It is built with its source's settings: `config` (plain JSON, Source.config) and
`secrets` (encrypted, Source.settings). The Tracking API's ingest path then stores the events as if an SDK had
sent them: dedupe on messageId, routing, outbox. A function never writes rows and never makes HTTP calls.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from integrations.typed_settings import parse_settings


class WebhookError(Exception):
    """A webhook refused as a whole: the HTTP status, a stable code, and a message for the sender and the
    Debugger. 401 for signatures, 400 for a payload that cannot be mapped, 503 for a source set up wrong
    (the tool retries, so nothing is lost once the settings are fixed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Incoming:
    """One webhook request: the raw body (signatures are over these bytes), its headers (case-insensitive,
    as Django's request.headers) and the parsed JSON."""

    body: bytes
    headers: Mapping[str, str]
    payload: Any
    received_at: datetime
    url: str = ""  # the URL the tool posted to (a JavaScript source function reads it as request.url)


@dataclass
class NoSettings:
    pass


@dataclass
class SigningSecret:
    signing_secret: str = ""  # blank: requests are not verified (the write key in the URL is the only secret)


class SourceFunction:
    """Verify a webhook request and map it to Segment-spec events (dicts the Tracking API would accept)."""

    kind: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type] = NoSettings
    secrets_class: ClassVar[type] = SigningSecret
    accepts_any_body: ClassVar[bool] = False  # True: a body that is not JSON still reaches events() (payload None)
    answers_empty: ClassVar[bool] = False  # True: a request that makes no event is answered 200, not 400

    def __init__(self, config: Any, secrets: Any) -> None:
        self.config, problems = parse_settings(self.config_class, config, "config")
        self.secrets, more = parse_settings(self.secrets_class, secrets, "settings")
        if problems or more:
            raise WebhookError(
                503,
                "source_misconfigured",
                "The source's settings are invalid, fix them in the admin: " + "; ".join(problems + more),
            )

    @classmethod
    def for_source(cls, source: Any) -> SourceFunction:
        """The function with this source's settings (a JavaScript one also keeps a warm context per source)."""
        return cls(source.config, source.settings)

    @classmethod
    def validate(cls, config: Any, secrets: Any) -> list[str]:
        """One message per bad setting (empty when the settings are good), for the admin and workspace files."""
        return (
            parse_settings(cls.config_class, config, "config")[1]
            + parse_settings(cls.secrets_class, secrets, "settings")[1]
        )

    @property
    def verifies(self) -> bool:
        """Whether requests must carry a valid signature (a signing secret is set)."""
        return bool(getattr(self.secrets, "signing_secret", ""))

    def verify(self, incoming: Incoming) -> None:
        """Raise WebhookError(401, ...) unless the request is signed with the source's secret."""
        raise NotImplementedError

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        """The Segment-spec events of this request, each with a messageId derived from the tool's own id (so a
        retried webhook is stored once). Raise WebhookError(400, ...) when the payload lacks what is needed."""
        raise NotImplementedError


# Helpers for signatures and times ---------------------------------------------------------------------


def hmac_digest(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two signature strings."""
    return hmac.compare_digest(expected.encode(), given.encode())


def header(incoming: Incoming, name: str) -> str:
    """A header's value, stripped; raises the 401 a missing signature header gets."""
    value = (incoming.headers.get(name) or "").strip()
    if not value:
        raise WebhookError(401, "missing_signature", f"The {name} header is missing: the request is not signed.")
    return value


def from_unix(seconds: Any) -> str | None:
    """An ISO-8601 UTC time (milliseconds, "Z") from Unix seconds, or None when it is not a number or not a time
    (past year 9999, a NaN)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
