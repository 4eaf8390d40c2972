"""Forward events to a Segment workspace through its HTTP Tracking API (/v1/batch)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from integrations.vendors.contract import DeliveryError, Result, Vendor

MAX_EVENT_BYTES = 32_000
MAX_BATCH_BYTES = 475_000  # Segment's limit is 500 KB; analytics-python keeps this margin for sentAt


@dataclass
class SegmentConfig:
    base_url: str = "https://api.segment.io"  # EU workspaces: https://events.eu1.segmentapis.com

    def check(self) -> list[str]:
        return [] if self.base_url.startswith(("http://", "https://")) else ["base_url: must be an http(s) URL"]


@dataclass
class SegmentCredentials:
    write_key: str


class Segment(Vendor):
    key = "segment"
    label = "Segment"
    config_class = SegmentConfig
    credentials_class = SegmentCredentials
    max_batch = 100
    default_rate_limit = (500, 1.0)
    setup_errors = Vendor.setup_errors | {"http_401", "http_403"}  # a wrong write key

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        results: dict[int, Result] = {}
        chunks: list[list[tuple[int, dict[str, Any]]]] = [[]]
        size = 0
        for i, event in enumerate(events):
            item = self.item(event)
            encoded = len(orjson.dumps(item))
            if encoded > MAX_EVENT_BYTES:
                results[i] = Result(
                    "failed", error_code="event_too_large", error_message="The event is over Segment's 32 KB limit."
                )
                continue
            if chunks[-1] and size + encoded > MAX_BATCH_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append((i, item))
            size += encoded + 1
        url = self.config.base_url.rstrip("/") + "/v1/batch"
        auth = (self.credentials.write_key, "")  # Basic auth: the write key and an empty password
        headers = {"Content-Type": "application/json"}
        for chunk in filter(None, chunks):
            # Send the compact bytes that were measured: requests' json= adds spaces and \u escapes.
            body = orjson.dumps({"batch": [item for _, item in chunk], "sentAt": _now()})
            sent = self.send(
                chunk, lambda body=body: self.http.request("POST", url, data=body, headers=headers, auth=auth)
            )
            results.update((i, result) for (i, _), result in zip(chunk, sent, strict=True))
        return [results[i] for i in range(len(events))]

    def item(self, event: dict[str, Any]) -> dict[str, Any]:
        # Segment sets its own receivedAt; sentAt is the time of this request.
        return {k: v for k, v in self.map_event(event).items() if k not in ("writeKey", "receivedAt", "sentAt")}

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        item = self.item(event)
        if len(orjson.dumps(item)) > MAX_EVENT_BYTES:
            raise DeliveryError(
                "The event is over Segment's 32 KB limit.",
                code="event_too_large",
                hint="Send fewer or shorter properties or traits, or map only what the Segment workspace needs.",
            )
        headers = {"Content-Type": "application/json", "Authorization": "Basic (the write key)"}
        return [
            {
                "method": "POST",
                "url": self.config.base_url.rstrip("/") + "/v1/batch",
                "headers": self.masked_headers(headers),
                "body": {"batch": [item], "sentAt": _now()},
                "note": "Basic auth with the destination's write key; up to 100 events share one call.",
            }
        ]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
