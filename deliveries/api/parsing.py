"""The management API's JSON parser: read the strict way the admin reads typed JSON (integrations/forms/fields.py:
no NaN, no number past a float, no nesting past 64 levels, no lone surrogate, each a 400 instead of an error on
save or on rendering the answer), refusing NUL characters, which PostgreSQL's jsonb cannot store. Size: Django's
DATA_UPLOAD_MAX_MEMORY_SIZE, checked before the body is read (deliveries/api/errors.py answers it with a 413)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from integrations.forms.fields import load_json

# \u0000 as JSON writes it, not preceded by an escaped backslash (`\\u0000` is the text "\u0000", which is fine).
# As deliveries.ingest.parsing's: not imported from there, as DRF reads this module while ingest's views load.
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class JsonParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        body = stream.read() if stream is not None else b""
        if NUL_ESCAPE.search(body):
            raise ParseError("JSON strings cannot hold NUL characters (\\u0000).")
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            return load_json(body.decode(encoding))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
