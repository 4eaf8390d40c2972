"""No answer of the API carries a source's write key. Ingest drops `writeKey` from what it stores, but a key can
still sit elsewhere in a body: a tool that echoes its webhook URL (/v1/webhooks/<write key>) in its payload, an
excerpt of a refused request, the request a destination was sent with that payload. Recorded exchanges are
redacted when recorded (the vendors' HTTP client); this is the last look before a row leaves as JSON."""

from __future__ import annotations

import base64
from collections.abc import Collection
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
from rest_framework.request import Request
from rest_framework.response import Response

from integrations.models import Source
from integrations.vendors.http import REDACTED

SHORTEST = 8  # a shorter "key" is no secret worth guarding, and replacing it would garble ordinary words


def forms_of(secret: str) -> set[str]:
    """The secret as a body may carry it: as is, URL-encoded, and as HTTP Basic's base64 ("key:")."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    for blob in (secret.encode(), secret.encode() + b":"):
        forms.add(base64.b64encode(blob).decode().rstrip("="))
    return {form for form in forms if form}


def without_secrets(value: Any, secrets: Collection[str]) -> Any:
    """`value` (JSON data) with every form of the secrets replaced, keys included; untouched when none is there."""
    chosen = {secret for secret in secrets if len(secret or "") >= SHORTEST}
    forms = sorted({form for secret in chosen for form in forms_of(secret)}, key=len, reverse=True)
    if not forms:
        return value
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()  # one look: the common case walks nothing
    if not any(form in text for form in forms):
        return value
    return _replace(value, forms)


def _replace(value: Any, forms: list[str]) -> Any:
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, REDACTED)
        return value
    if isinstance(value, dict):
        return {_replace(k, forms): _replace(v, forms) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, forms) for v in value]
    return value


def without_write_keys(value: Any) -> Any:
    """`value` without any source's write key. The sources are few: one small query."""
    return without_secrets(value, list(Source.objects.values_list("write_key", flat=True)))


class WithoutWriteKeys:
    """A viewset mixin: whatever the view answers (rows, errors) leaves without any source's write key."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and response.data is not None:
            response.data = without_write_keys(response.data)
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
