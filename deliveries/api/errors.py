"""The management API's errors in DRF's shapes: a model's ValidationError becomes a 400 per field, a body over
Django's size limit a 413 and the database unreachable a 503 with Retry-After (deliveries/outage.py), never a 500."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as ModelValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from deliveries.outage import CODE, MESSAGE, is_outage, mark_refused, note_outage


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = CODE
    default_detail = MESSAGE


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_outage(exc):
        request = context["request"]
        note_outage(f"{request.method} {request.path}", exc)
        return mark_refused(drf_exception_handler(DatabaseUnavailable(), context))
    if isinstance(exc, RequestDataTooBig):  # Django's limit, checked before reading: a 413, not Django's HTML 400
        exc = BodyTooLarge(f"The body is over the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024} KB limit.")
    if isinstance(exc, ModelValidationError):
        if hasattr(exc, "error_dict"):
            detail = {
                (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
                for field, messages in exc.message_dict.items()
            }
        else:
            detail = {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        exc = exceptions.ValidationError(detail)
    return drf_exception_handler(exc, context)
