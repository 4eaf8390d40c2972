"""What the /v1/ endpoints share as DRF views, apart from the management API's settings: JSON by orjson whatever
Accept says, the view's one parser whatever Content-Type says (it checks the type itself), no throttling, no session
(so no CSRF), no place in the OpenAPI document, and every refusal as `{"success": false, "code", "message"}`."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Empty, Request
from rest_framework.views import APIView

from deliveries.outage import CODE, MESSAGE, is_outage, outage_response


class RequestError(exceptions.APIException):
    """A request refused as a whole; the status, a stable code and a message for the sender."""

    def __init__(self, status: int, code: str, message: str, body: bytes = b"") -> None:
        super().__init__(message, code)
        self.status_code = self.status = status
        self.code = code
        self.message = message
        self.body = body  # what was read of the request body (decompressed), kept for the Debugger


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None  # Content-Type: application/json, as Segment answers

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        return b"" if data is None else orjson.dumps(data)


RENDERER = OrjsonRenderer()


def answer(data: Any, status: int = 200) -> HttpResponse:
    """`data` rendered at once by ingest's renderer. Not DRF's Response, which renders the same bytes later through
    Django's template-response steps: ~14 µs more on every request, which would be a third of what DRF costs a
    single event (bench/README.md, "The Tracking API on DRF")."""
    return HttpResponse(RENDERER.render(data), status=status, content_type=RENDERER.media_type)


def error_response(error: RequestError) -> HttpResponse:
    return answer({"success": False, "code": error.code, "message": error.message}, error.status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's exception handler for ingest views: every refusal in ingest's shape, the database unreachable a 503
    (deliveries/outage.py); anything else is a bug (500)."""
    if isinstance(exc, RequestError):
        return error_response(exc)
    if is_outage(exc):  # nothing stored: the sender retries after Retry-After, the SDKs' way
        request = context["request"]
        return outage_response({"success": False, "code": CODE, "message": MESSAGE}, f"POST {request.path}", exc)
    if isinstance(exc, exceptions.MethodNotAllowed):
        response = error_response(RequestError(405, "method_not_allowed", "Use POST."))
        response["Allow"] = ", ".join(context["view"].allowed_methods)
        return response
    if isinstance(exc, exceptions.APIException):
        return error_response(RequestError(exc.status_code, exc.default_code, str(exc.detail)))
    return None


class OneParserOneRenderer(BaseContentNegotiation):
    """No negotiation: an SDK's Accept header changes nothing, and the view's parser judges the Content-Type."""

    def select_parser(self, request: Request, parsers: Sequence[BaseParser]) -> BaseParser:
        return parsers[0]

    def select_renderer(
        self, request: Request, renderers: Sequence[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class IngestRequest(Request):
    """DRF's Request, with `data` read by the view's one parser in one step, an empty body included: DRF's own
    `data` skips the parser when Content-Length is 0 and takes ~20 calls of lazy loading to reach it otherwise, a
    sixth of what DRF adds to a single event (bench/README.md, "The Tracking API on DRF")."""

    @property
    def data(self) -> Any:
        if self._full_data is Empty:
            stream = self.stream or io.BytesIO()
            self._data = self._full_data = self.parsers[0].parse(stream, self.content_type, self.parser_context)
        return self._full_data


class IngestView(APIView):
    """A /v1/ endpoint: POST only; a subclass sets its parser (and authentication, if the key is not in the URL)."""

    http_method_names = ["post"]
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []  # never throttled: refusing an SDK's events for coming fast would lose them
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = OneParserOneRenderer
    versioning_class = None
    schema = None  # the Tracking API is Segment's, documented there, not in the management API's OpenAPI

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], HttpResponse | None]:
        return exception_handler

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> IngestRequest:
        return IngestRequest(
            request,
            parsers=self.get_parsers(),
            authenticators=self.get_authenticators(),
            negotiator=self.get_content_negotiator(),
            parser_context=self.get_parser_context(request),
        )

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's initial() less what ingest never uses: format suffixes, versions and content negotiation (there is
        one renderer), ~3 µs a request. Authentication (lazy for the Tracking API), permissions and throttles run as
        declared."""
        self.format_kwarg = None
        request.accepted_renderer, request.accepted_media_type = RENDERER, RENDERER.media_type
        request.version, request.versioning_scheme = None, None
        self.perform_authentication(request)
        self.check_permissions(request)
        self.check_throttles(request)

    @property
    def default_response_headers(self) -> dict[str, str]:
        return {}  # DRF puts Allow on every answer; only a 405 needs it

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        # DRF's Request points at itself and at this view through its parser_context, and this view at the Request:
        # cut that loop, so the parsed body is freed as the request ends, not left to the cycle collector, which
        # would walk a whole batch of events to find it (~0.3 ms more CPU per batch of 100).
        self.request.parser_context.clear()
        return response
