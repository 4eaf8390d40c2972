"""Any HTTP endpoint: JSON by POST or PUT, signed the Standard Webhooks way so receivers can verify it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from integrations.vendors.contract import Result, Vendor


@dataclass
class WebhookConfig:
    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    batch_size: int = 1

    def check(self) -> list[str]:
        problems = []
        if not self.url.startswith(("http://", "https://")):
            problems.append("url: must start with http:// or https://")
        if not 1 <= self.batch_size <= 500:
            problems.append("batch_size: must be between 1 and 500")
        return problems


@dataclass
class WebhookCredentials:
    signing_secret: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # secret headers, e.g. an API key

    def check(self) -> list[str]:
        if self.signing_secret.startswith("whsec_") and secret_key(self.signing_secret) is None:
            return [
                "signing_secret: a whsec_ secret is whsec_ followed by base64 (as Standard Webhooks issues it); "
                "paste it whole, or use a secret without the whsec_ prefix"
            ]
        return []


def secret_key(secret: str) -> bytes | None:
    """The HMAC key of a secret: a whsec_ one is base64 (read leniently, padding optional; None when it cannot be
    read at all), any other is its own bytes."""
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        text = secret[6:].encode("ascii")
    except UnicodeEncodeError:
        return None
    for padding in (b"", b"=" * (-len(text) % 4)):
        try:
            return base64.b64decode(text + padding)
        except binascii.Error:
            continue
    return None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")); whsec_ keys are base64."""
    key = secret_key(secret)
    if key is None:
        raise ValueError("the signing secret is not whsec_ followed by base64")  # refused at save: WebhookCredentials
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Webhook(Vendor):
    key = "webhook"
    label = "Webhook"
    config_class = WebhookConfig
    credentials_class = WebhookCredentials
    # Adaptive by default: start at 1000/s and slow down only when the receiver answers 429, 5xx or times out.
    default_rate_limit = (1000, 1.0)
    setup_errors = Vendor.setup_errors | {"http_401", "http_403"}

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, credentials, *args, **kwargs)
        self.max_batch = self.config.batch_size

    def secret_header_names(self) -> set[str]:
        return set(self.credentials.headers) | {"webhook-signature"}

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        payload, message_id = self.payload(events)
        body = orjson.dumps(payload)
        headers = self.headers(message_id, body)
        return self.send(
            events, lambda: self.http.request(self.config.method, self.config.url, data=body, headers=headers)
        )

    def payload(self, events: list[dict[str, Any]]) -> tuple[Any, str]:
        """The body (one mapped event, or {"batch": [...]} when batching) and the webhook-id it is signed with."""
        mapped = [self.map_event(e) for e in events]
        if self.config.batch_size > 1:
            message_id = "batch_" + hashlib.sha256("|".join(e["messageId"] for e in events).encode()).hexdigest()[:32]
            return {"batch": mapped}, message_id
        return mapped[0], events[0]["messageId"]

    def headers(self, message_id: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers, **self.credentials.headers}
        if self.credentials.signing_secret:
            timestamp = int(time.time())
            headers |= {
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self.credentials.signing_secret, message_id, timestamp, body),
            }
        return headers

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        payload, message_id = self.payload([event])
        signed = bool(self.credentials.signing_secret)
        note = "Signed the Standard Webhooks way (webhook-signature, hidden here)." if signed else "Not signed."
        return [
            {
                "method": self.config.method,
                "url": self.config.url,
                "headers": self.masked_headers(self.headers(message_id, orjson.dumps(payload))),
                "body": payload,
                "note": note,
            }
        ]
