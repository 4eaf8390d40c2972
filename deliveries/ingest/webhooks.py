"""`POST /v1/webhooks/<write key>`: a tool's webhook (Customer.io, Stripe, Zendesk, any JSON) through its source
function into the Tracking API's ingest path.

Only what must happen before answering happens here: read, verify, map and store (dedupe, routing, outbox).
Delivery runs in the worker, so the tool gets its 2xx in milliseconds (Customer.io gives up after 4 s and holds
later webhooks back behind a failing one). A refused request is stored as a rejected event with the reason, so
the Debugger shows it, and the source page shows the last request's result.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from django.db import IntegrityError
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.request import Request

from deliveries.ingest.endpoint import IngestView, RequestError, answer, error_response
from deliveries.ingest.lookups import forget, source_for_write_key
from deliveries.ingest.normalisation import EventError, Rejection, normalise, rejection_for
from deliveries.ingest.parsing import MAX_DEPTH, WebhookParser, readable, too_deep, without_nul
from deliveries.ingest.store import store
from deliveries.outage import is_outage
from integrations.models import Source
from integrations.spec import EVENT_TYPES
from integrations.webhooks import FUNCTIONS, Incoming, SourceFunction, WebhookError

log = logging.getLogger("cdphub.webhooks")

EXCERPT_BYTES = 4096
LAST_BODY_BYTES = 64 * 1024


class WebhookView(IngestView):
    """POST /v1/webhooks/<write key>: the key is in the URL, so no authentication class; the body is read as bytes."""

    parser_classes = [WebhookParser]

    def post(self, request: Request, write_key: str) -> HttpResponse:
        now = timezone.now()
        received_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
        source = webhook_source(write_key)  # a wrong URL is answered, not recorded: there is no source to record it on
        body = b""
        try:
            body = request.data
            function = FUNCTIONS[source.kind].for_source(source)
            payload = lenient_json(body) if function.accepts_any_body else parse_webhook_json(body)
            incoming = Incoming(body, request.headers, payload, received_at, request.build_absolute_uri())
            if function.verifies:
                function.verify(incoming)
            response = _ingest(source, function, incoming)
        except Exception as exc:
            if is_outage(exc):
                raise  # nothing to record it in: a 503 (ingest's exception handler), the tool retries
            if isinstance(exc, RequestError):
                error = exc
            elif isinstance(exc, WebhookError):
                error = RequestError(exc.status, exc.code, exc.message)
            else:  # a bug in a source function: the tool retries a 500, and the Debugger shows the request
                log.exception("the %s source function failed on a request to source %s", source.kind, source.pk)
                error = RequestError(
                    500, "internal_error", f"cdphub could not read this webhook ({type(exc).__name__})."
                )
            excerpt = readable(body[:EXCERPT_BYTES])
            store(source, [], [rejection_for(excerpt, EventError(error.code, error.message))], received_at)
            response = error_response(error)
            if error.status == 503:
                response["Retry-After"] = "60"  # a source set up wrong, or a function asking to be retried
        remember_result(source, response, received_at, body)
        return response


webhook_view = WebhookView.as_view()


def webhook_source(write_key: str) -> Source:
    source = source_for_write_key(write_key)
    if source is None:
        raise RequestError(404, "invalid_write_key", "No source has this write key: copy the webhook URL again.")
    if not source.enabled:
        raise RequestError(403, "source_disabled", "The source with this write key is disabled.")
    if source.kind not in FUNCTIONS:
        raise RequestError(
            400,
            "not_a_webhook_source",
            f"This is a {source.get_kind_display()} source: send events to /v1/track, /v1/batch …, or change "
            "the source's kind to the tool that posts the webhook.",
        )
    return source


def parse_webhook_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestError(400, "invalid_json", "The body is empty: the webhook must post JSON.")
    try:
        return orjson.loads(without_nul(body))  # signatures were checked on the body as sent
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"The body is not valid JSON: {exc}.") from None


def lenient_json(body: bytes) -> Any:
    """The JSON of a body, or None when it is not JSON (a form post, text): the function reads the raw body."""
    try:
        return orjson.loads(without_nul(body)) if body.strip() else None
    except orjson.JSONDecodeError:
        return None


def map_webhook(function: SourceFunction, incoming: Incoming) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """The events a request makes, normalised as the Tracking API does, and the ones it refuses."""
    payloads, rejections = [], []
    for index, item in enumerate(function.events(incoming)):
        try:
            item = storable(item)
        except EventError as exc:  # what was made cannot be stored as a rejection either: its type tells what it was
            kind = item.get("type")
            rejections.append(rejection_for({"type": kind} if kind in EVENT_TYPES else {}, exc, index))
            continue
        try:
            payloads.append(normalise(item, item.get("type"), incoming.received_at))
        except EventError as exc:
            rejections.append(rejection_for(item, exc, index))
    return payloads, rejections


def storable(item: dict[str, Any]) -> dict[str, Any]:
    """A source function's event as every database stores it: nested no deeper than a Tracking API event, and NUL
    characters (from the payload, or made by a JavaScript function) as U+FFFD, as the Tracking API reads them."""
    if too_deep(item):
        raise EventError("too_deep", f"The event is nested more than {MAX_DEPTH} levels deep.")
    try:
        text = orjson.dumps(item)
    except orjson.JSONEncodeError:
        raise EventError("invalid_event", "The event holds a value JSON cannot carry.") from None
    return orjson.loads(without_nul(text)) if b"\\u0000" in text else item


def _ingest(source: Source, function: SourceFunction, incoming: Incoming) -> HttpResponse:
    payloads, rejections = map_webhook(function, incoming)
    try:
        result = store(source, payloads, rejections, incoming.received_at)
    except IntegrityError:  # the source was deleted by another process while this one remembered it
        forget()
        result = store(webhook_source(source.write_key), payloads, rejections, incoming.received_at)
    body: dict[str, Any] = {"success": bool(payloads), "events": len(result.accepted)}
    if result.duplicates:
        body["duplicates"] = result.duplicates
    if rejections:
        body["rejected"] = [r.as_json() for r in rejections]
    if not payloads and not (function.answers_empty and not rejections):
        body.update(code="invalid_events", message="None of the webhook's events could be accepted.")
        return answer(body, 400)
    own = getattr(function, "response", None)
    if own is not None:  # the source function's own answer for the tool (the events are stored all the same)
        response = HttpResponse(own["body"], status=own["status"])
        for name, value in own["headers"].items():
            response[name] = value
        response.cdphub_result = body  # what remember_result() reports, the tool's answer aside
        return response
    return answer(body | {"success": True} if function.answers_empty else body)


def remember_result(source: Source, response: HttpResponse, at: datetime, body: bytes) -> None:
    """What the source page shows as the last request: its time, status, a one-line result, and the start of
    the body (Try a payload starts from it, so a marketer tests a mapping on what the tool really sends)."""
    data = getattr(response, "cdphub_result", None)
    try:
        data = data if data is not None else orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = {}
    if response.status_code == 200 or hasattr(response, "cdphub_result"):
        result = f"{data.get('events', 0)} event(s) stored"
        if data.get("duplicates"):
            result += f", {data['duplicates']} duplicate(s) already stored"
        if data.get("rejected"):
            result += f", {len(data['rejected'])} refused: {data['rejected'][0]['reason']}"
    else:
        result = f"{data.get('code', 'error')}: {data.get('message', '')}"
    Source.objects.filter(pk=source.pk).update(
        last_request_at=at,
        last_request_status=response.status_code,
        last_request_result=result[:1000].replace("\x00", "\ufffd"),
        last_request_body=readable(body[:LAST_BODY_BYTES]),
    )
