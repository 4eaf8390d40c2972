"""Which source a Tracking API request is for: its write key, as HTTP Basic's username or `writeKey` in the body."""

from __future__ import annotations

import base64
import binascii

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from deliveries.ingest.endpoint import RequestError
from deliveries.ingest.lookups import source_for_write_key
from integrations.models import Source


class WriteKeyAuthentication(BaseAuthentication):
    """The source by its write key: the HTTP Basic username (with or without the trailing colon, any password
    ignored), else `writeKey` in the JSON body (analytics.js sends no Authorization). A bad header is refused even
    when the body holds a good key; without a header, the body is read first, so its errors come before a missing
    key. Ingest acts for no user: `request.user` is anonymous and `request.auth` is the Source."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, Source]:
        write_key = write_key_from_header(request)
        if write_key is None:
            write_key = request.data.get("writeKey")
        return AnonymousUser(), find_source(write_key)


def write_key_from_header(request: Request) -> str | None:
    """The write key in HTTP Basic auth, with or without the trailing colon; None without an Authorization header."""
    header = request.META.get("HTTP_AUTHORIZATION", "")  # not request.headers, which copies every header first
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise RequestError(
            401, "invalid_auth", "Use HTTP Basic auth with the write key as the username, or writeKey in the body."
        )
    try:
        decoded = base64.b64decode(value.strip().encode("latin-1"), validate=True).decode()  # WSGI headers: latin-1
    except (binascii.Error, UnicodeError):
        raise RequestError(401, "invalid_auth", "The Authorization header is not valid Basic auth.") from None
    return decoded.partition(":")[0]


def find_source(write_key: object) -> Source:
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
