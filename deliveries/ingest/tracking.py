"""The Segment-compatible Tracking API: /v1/identify|track|page|screen|group|alias|batch and /v1/import."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from deliveries.ingest.lookups import forget, source_for_write_key
from deliveries.ingest.normalisation import MAX_EVENT_BYTES, EventError, Rejection, normalise, rejection_for
from deliveries.ingest.store import store
from integrations.models import Source

log = logging.getLogger("cdphub.tracking")

MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_DEPTH = 64
JSON_TYPES = ("application/json", "text/plain", "")  # analytics.js posts text/plain to skip the preflight
BATCH_ENDPOINTS = ("batch", "import")
WRITE_KEY_IN_TEXT = re.compile(r'("writeKey"\s*:\s*)"[^"]*"')


class RequestError(Exception):
    """A request refused as a whole; the status, a stable code and a message for the sender."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: RequestError) -> HttpResponse:
    return json_response({"success": False, "code": error.code, "message": error.message}, error.status)


def with_cors(view: Callable[[HttpRequest, str], HttpResponse]) -> Callable[..., HttpResponse]:
    """Let browser SDKs post from any web page: answer preflights and label every answer."""

    def wrapped(request: HttpRequest, endpoint: str) -> HttpResponse:
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = request.META.get(
                "HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "Content-Type, Authorization, Content-Encoding"
            )
            response["Access-Control-Max-Age"] = "86400"
        else:
            response = view(request, endpoint)
        origin = request.META.get("HTTP_ORIGIN")
        response["Access-Control-Allow-Origin"] = origin or "*"
        if origin:
            response["Vary"] = "Origin"
        return response

    return csrf_exempt(wrapped)


def write_key_from_header(request: HttpRequest) -> str | None:
    """Read the write key from HTTP Basic auth, with or without the trailing colon."""
    header = request.META.get("HTTP_AUTHORIZATION", "")  # META: request.headers copies every header first
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise RequestError(
            401, "invalid_auth", "Use HTTP Basic auth with the write key as the username, or writeKey in the body."
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise RequestError(401, "invalid_auth", "The Authorization header is not valid Basic auth.") from None
    return decoded.partition(":")[0]


def find_source(write_key: str | None) -> Source:
    if not write_key or not isinstance(write_key, str):
        raise RequestError(
            401, "missing_write_key", "No write key: send it as the Basic auth username or as writeKey in the body."
        )
    source = source_for_write_key(write_key)
    if source is None:
        raise RequestError(401, "invalid_write_key", "Unknown write key.")
    if not source.enabled:
        raise RequestError(401, "source_disabled", "The source with this write key is disabled.")
    return source


def read_body(request: HttpRequest, limit: int) -> bytes:
    """Return the (decompressed) body, refusing anything over `limit` bytes before reading it all."""
    media_type = request.content_type.lower() if request.content_type else ""
    if media_type not in JSON_TYPES:
        raise RequestError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise RequestError(415, "unsupported_encoding", "Content-Encoding must be gzip or absent.")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise RequestError(413, "payload_too_large", _too_large(limit))
    body = request.read(limit + 1)
    if len(body) > limit:
        raise RequestError(413, "payload_too_large", _too_large(limit))
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise RequestError(400, "invalid_gzip", "The body is not valid gzip.") from None
        if len(body) > limit:
            raise RequestError(413, "payload_too_large", _too_large(limit) + " (after gzip decompression)")
        if not inflater.eof:
            raise RequestError(400, "invalid_gzip", "The gzip body is truncated.")
    return body


def _too_large(limit: int) -> str:
    if limit == MAX_EVENT_BYTES:
        return "The event is over the 32 KB limit for a single event."
    return "The request is over the 500 KB limit for a batch."


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise RequestError(400, "invalid_json", "The body is empty; send a JSON object.")
    if b"\\u0000" in body:
        body = body.replace(b"\\u0000", b"\\ufffd")  # PostgreSQL's jsonb cannot store NUL characters
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise RequestError(400, "invalid_json", "The body must be a JSON object.")
    # Nesting can be no deeper than the number of opening brackets, so most bodies skip the walk.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise RequestError(400, "too_deep", f"The JSON is nested more than {MAX_DEPTH} levels deep.")
    return data


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


def client_ip(request: HttpRequest) -> str | None:
    """The sender's address; behind a proxy (CDPHUB_BEHIND_PROXY) the first X-Forwarded-For entry."""
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR") or None


def _ingest(source: Source, data: dict[str, Any], endpoint: str, received_at: datetime, ip: str | None) -> HttpResponse:
    if endpoint in BATCH_ENDPOINTS:
        return _ingest_batch(source, data, received_at, ip)
    return _ingest_one(source, data, endpoint, received_at, ip)


@with_cors
def tracking_view(request: HttpRequest, endpoint: str) -> HttpResponse:
    if request.method != "POST":
        return error_response(RequestError(405, "method_not_allowed", "Use POST."))
    now = timezone.now()
    received_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Segment's precision: ms
    source: Source | None = None
    try:
        header_key = write_key_from_header(request)
        if header_key is not None:
            source = find_source(header_key)
        limit = MAX_BATCH_BYTES if endpoint in BATCH_ENDPOINTS else MAX_EVENT_BYTES
        body = b""
        try:
            body = read_body(request, limit)
            data = parse_json(body)
        except RequestError as exc:
            if source is not None and exc.status != 415:
                _record_request_rejection(source, exc, body, received_at)
            raise
        if source is None:
            source = find_source(data.get("writeKey"))
        try:
            return _ingest(source, data, endpoint, received_at, client_ip(request))
        except IntegrityError:
            # The source or one of its destinations was deleted by another process while this one still
            # remembered it (look-ups are kept a few seconds): look again, once. A deleted source is a 401.
            forget()
            return _ingest(find_source(source.write_key), data, endpoint, received_at, client_ip(request))
    except RequestError as exc:
        return error_response(exc)


def _record_request_rejection(source: Source, error: RequestError, body: bytes, received_at: datetime) -> None:
    """Keep a refused request visible in the Debugger, with the start of what was sent."""
    excerpt = WRITE_KEY_IN_TEXT.sub(r'\1"[REDACTED]"', body[:4096].decode(errors="replace"))
    store(source, [], [rejection_for(excerpt, EventError(error.code, error.message))], received_at)


def _ingest_one(
    source: Source, data: dict[str, Any], endpoint: str, received_at: datetime, ip: str | None
) -> HttpResponse:
    try:
        payload = normalise(data, endpoint, received_at, ip=ip)
    except EventError as exc:
        # The endpoint gives the type (the body need not), so the Debugger files the rejection under it.
        store(source, [], [rejection_for({**data, "type": endpoint}, exc)], received_at)
        return error_response(RequestError(400, exc.code, exc.message))
    result = store(source, [payload], [], received_at)
    return json_response(
        {"success": True, "duplicate": bool(result.duplicates)} if result.duplicates else {"success": True}
    )


def _ingest_batch(source: Source, data: dict[str, Any], received_at: datetime, ip: str | None) -> HttpResponse:
    items = data.get("batch")
    if not isinstance(items, list):
        error = RequestError(400, "invalid_batch", "batch must be a list of events.")
        store(source, [], [rejection_for(data, EventError(error.code, error.message))], received_at)
        return error_response(error)
    if len(items) > MAX_BATCH_EVENTS:
        error = RequestError(
            400, "too_many_events", f"A batch holds at most {MAX_BATCH_EVENTS} events; this one has {len(items)}."
        )
        store(source, [], [rejection_for({}, EventError(error.code, error.message))], received_at)
        return error_response(error)
    context, integrations, sent_at = data.get("context"), data.get("integrations"), data.get("sentAt")
    if not isinstance(context, dict | None) or not isinstance(integrations, dict | None):
        error = RequestError(400, "invalid_type", "The batch's context and integrations must be objects.")
        store(source, [], [rejection_for(data, EventError(error.code, error.message))], received_at)
        return error_response(error)
    payloads: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict) and len(orjson.dumps(item)) > MAX_EVENT_BYTES:
                raise EventError("event_too_large", "The event is over the 32 KB limit for one event.")
            event_type = item.get("type") if isinstance(item, dict) else None
            payloads.append(
                normalise(
                    item,
                    event_type,
                    received_at,
                    sent_at=sent_at,
                    context=context,
                    integrations=integrations,
                    ip=ip,
                )
            )
        except EventError as exc:
            rejections.append(rejection_for(item, exc, index))
    result = store(source, payloads, rejections, received_at)
    body: dict[str, Any] = {"success": bool(payloads) or not items}
    if result.duplicates:
        body["duplicates"] = result.duplicates
    if rejections:
        body["accepted"] = len(result.accepted)
        body["rejected"] = [r.as_json() for r in rejections]
    if not payloads and items:
        body.update(code="invalid_batch", message=f"All {len(items)} events in the batch were rejected.")
        return json_response(body, 400)
    return json_response(body)
