"""Reading an ingest request's body, as DRF parsers: the Tracking API's JSON (the media types it takes, gzip with a
cap on decompression, size limits checked before reading, orjson, NUL characters, a nesting limit) and a webhook's
bytes as sent."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.parsers import BaseParser

from deliveries.ingest.endpoint import RequestError
from deliveries.ingest.normalisation import MAX_EVENT_BYTES

MAX_BATCH_BYTES = 500 * 1024
MAX_WEBHOOK_BYTES = 512 * 1024
MAX_DEPTH = 64
JSON_TYPES = ("application/json", "text/plain", "")  # analytics.js posts text/plain to skip the preflight
# \u0000 as JSON writes it, not preceded by an escaped backslash (`\\u0000` is the text "\u0000", which is fine).
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class TrackingParser(BaseParser):
    """The Tracking API's JSON object, at most `parser_context["max_bytes"]` (after gzip).

    Chosen for every Content-Type (the ingest negotiation takes a view's one parser), so that it accepts
    text/plain and no Content-Type as JSON and refuses anything else in the API's own words."""

    media_type = "*/*"

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        parser_context = parser_context or {}
        meta = parser_context["request"].META
        limit = parser_context["max_bytes"]
        if (media_type or "").partition(";")[0].strip().lower() not in JSON_TYPES:
            raise RequestError(
                415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json."
            )
        encoding = meta.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if encoding not in ("identity", "gzip", ""):
            raise RequestError(415, "unsupported_encoding", "Content-Encoding must be gzip or absent.")
        body = read_at_most(stream, meta, limit, _too_large(limit))
        if encoding == "gzip":
            body = gunzip(body, limit)
        return parse_json(body)


class WebhookParser(BaseParser):
    """A webhook's body as the tool sent it (signatures cover these exact bytes), whatever its media type."""

    media_type = "*/*"

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> bytes:
        parser_context = parser_context or {}
        too_large = "The webhook body is over the 512 KB limit."
        return read_at_most(stream, parser_context["request"].META, MAX_WEBHOOK_BYTES, too_large)


def read_at_most(stream: IO[bytes], meta: Mapping[str, Any], limit: int, too_large: str) -> bytes:
    """The body, refused with the message `too_large` when over `limit` bytes; by Content-Length before reading."""
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise RequestError(413, "payload_too_large", too_large)
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise RequestError(413, "payload_too_large", too_large)
    return body


def gunzip(body: bytes, limit: int) -> bytes:
    """The inflated body: every gzip member of it (RFC 1952 lets a body be several, one after the other), refused
    as soon as the members together inflate past `limit` bytes, so a gzip bomb is never inflated further."""
    inflated: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, limit + 1 - size)  # a gzip bomb stops here
        except zlib.error:
            raise RequestError(400, "invalid_gzip", "The body is not valid gzip.") from None
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "payload_too_large", _too_large(limit) + " (after gzip decompression)")
        inflated.append(chunk)
        if not inflater.eof:
            raise RequestError(400, "invalid_gzip", "The gzip body is truncated.")
        rest = inflater.unused_data
        if not rest:
            return b"".join(inflated)


def _too_large(limit: int) -> str:
    if limit == MAX_EVENT_BYTES:
        return "The event is over the 32 KB limit for a single event."
    return "The request is over the 500 KB limit for a batch."


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise RequestError(400, "invalid_json", "The body is empty; send a JSON object.", body)
    text = without_nul(body)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"The body is not valid JSON: {exc}.", body) from None
    if not isinstance(data, dict):
        raise RequestError(400, "invalid_json", "The body must be a JSON object.", body)
    # Nesting can be no deeper than the number of opening brackets, so most bodies skip the walk.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and too_deep(data):
        raise RequestError(400, "too_deep", f"The JSON is nested more than {MAX_DEPTH} levels deep.", body)
    return data


def without_nul(text: bytes) -> bytes:
    """JSON text with its NUL characters (\\u0000) as U+FFFD: PostgreSQL's jsonb and text columns cannot hold NUL,
    and SQLite takes the same, so an event is stored alike on both."""
    if b"\\u0000" not in text:
        return text
    return NUL_ESCAPE.sub(lambda match: match.group()[:-6] + b"\\ufffd", text)


def readable(body: bytes) -> str:
    """A body (or its start) as text for the Debugger and the source page: invalid UTF-8 and NUL bytes as U+FFFD,
    as PostgreSQL's text and jsonb cannot hold NUL."""
    return body.decode(errors="replace").replace("\x00", "\ufffd")


def too_deep(value: Any) -> bool:
    return _depth(value) > MAX_DEPTH


def _depth(value: Any) -> int:
    """How deeply objects and lists nest (1: no container inside), counted level by level up to MAX_DEPTH + 1."""
    depth, level = 0, [value]
    while level and depth <= MAX_DEPTH:
        depth += 1
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
    return depth
