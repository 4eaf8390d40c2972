"""The Segment-compatible Tracking API: /v1/identify|track|page|screen|group|alias|batch and /v1/import."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError
from django.http import HttpResponse, HttpResponseBase
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from rest_framework.request import Request

from deliveries.ingest.auth import WriteKeyAuthentication, find_source
from deliveries.ingest.endpoint import IngestView, RequestError, answer, error_response
from deliveries.ingest.lookups import forget
from deliveries.ingest.normalisation import MAX_EVENT_BYTES, EventError, Rejection, normalise, rejection_for
from deliveries.ingest.parsing import MAX_BATCH_BYTES, TrackingParser, readable
from deliveries.ingest.store import store
from integrations.models import Source

log = logging.getLogger("cdphub.tracking")

MAX_BATCH_EVENTS = 2500
BATCH_ENDPOINTS = ("batch", "import")
WRITE_KEY_IN_TEXT = re.compile(r'("writeKey"\s*:\s*)"[^"]*"?')  # "? : a key cut off by the excerpt's end too


class TrackingView(IngestView):
    """POST /v1/<endpoint>: one event, or a batch for `batch` and `import`; browser SDKs may post from any page."""

    http_method_names = ["post", "options"]
    authentication_classes = [WriteKeyAuthentication]
    parser_classes = [TrackingParser]

    def perform_authentication(self, request: Request) -> None:
        """Authenticate lazily, when post() asks for request.auth: a preflight or a GET needs no key, and a key in
        the body is read with the body, once."""

    def get_parser_context(self, http_request: Any) -> dict[str, Any]:
        context = super().get_parser_context(http_request)
        context["max_bytes"] = MAX_BATCH_BYTES if self.kwargs["endpoint"] in BATCH_ENDPOINTS else MAX_EVENT_BYTES
        return context

    def post(self, request: Request, endpoint: str) -> HttpResponse:
        now = timezone.now()
        received_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Segment's precision: ms
        source: Source = request.auth
        try:
            data = request.data
        except RequestError as exc:  # only with the key in the header: the body is read by now otherwise
            if exc.status != 415:
                _record_request_rejection(source, exc, received_at)
            raise
        try:
            return _ingest(source, data, endpoint, received_at, client_ip(request))
        except IntegrityError:
            # The source or one of its destinations was deleted by another process while this one still
            # remembered it (look-ups are kept a few seconds): look again, once. A deleted source is a 401.
            forget()
            return _ingest(find_source(source.write_key), data, endpoint, received_at, client_ip(request))

    def options(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """A CORS preflight: any page may post, with the headers it asks for."""
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = request.META.get(
            "HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "Content-Type, Authorization, Content-Encoding"
        )
        response["Access-Control-Max-Age"] = "86400"
        return response

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        """Label every answer, refusals too, so a browser SDK can read it."""
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = request.META.get("HTTP_ORIGIN")
        response["Access-Control-Allow-Origin"] = origin or "*"
        if origin:
            patch_vary_headers(response, ("Origin",))
        return response


tracking_view = TrackingView.as_view()


def client_ip(request: Request) -> str | None:
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


def _record_request_rejection(source: Source, error: RequestError, received_at: datetime) -> None:
    """Keep a refused request visible in the Debugger, with the start of what was sent."""
    excerpt = WRITE_KEY_IN_TEXT.sub(r'\1"[REDACTED]"', readable(error.body[:4096]))
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
    return answer({"success": True, "duplicate": True} if result.duplicates else {"success": True})


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
        return answer(body, 400)
    return answer(body)
