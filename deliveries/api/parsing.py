"""The management API's JSON parser: DRF's, refusing NUL characters, which PostgreSQL's jsonb cannot store (a 400
that says so instead of an error on save). Size: Django's DATA_UPLOAD_MAX_MEMORY_SIZE, checked before the body
is read (deliveries/api/errors.py answers it with a 413)."""

from __future__ import annotations

import re
from io import BytesIO
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# \u0000 as JSON writes it, not preceded by an escaped backslash (`\\u0000` is the text "\u0000", which is fine).
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class JsonParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        body = stream.read() if stream is not None else b""
        if NUL_ESCAPE.search(body):
            raise ParseError("JSON strings cannot hold NUL characters (\\u0000).")
        return super().parse(BytesIO(body), media_type, parser_context)
