"""Hypothesis strategies for bad request bodies, shared by the fuzz tests: JSON values with the awkward corners
(NUL characters, 10 KB strings, numbers past 64 bits, -0), and the ways a body goes wrong on the wire (deep nesting,
huge numbers and NaN as literals, invalid UTF-8, raw NUL bytes, lone surrogate escapes, duplicate keys, BOMs,
truncation, other charsets), and its Content-Encoding (gzip, truncated gzip, gzip bombs, unknown encodings)."""

from __future__ import annotations

import functools
import gzip
import zlib
from typing import Any

from hypothesis import strategies as st

# Text without surrogates (orjson cannot write a lone one; lone surrogate escapes come as raw splices below).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
AWKWARD_TEXT = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "\x00", "a\x00b", "\\u0000", "\\\\u0000", "\ufeff", "\ufffd", "\u2028", "🎉", "null"]),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2024-13-01", "1" * 5000, "{{x}}"]),
    st.just("x" * 10_240),  # 10 KB: past every id's 255 characters
)
NUMBERS = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 2**53 + 1, 1e308, 5e-324]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, AWKWARD_TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(AWKWARD_TEXT, inner, max_size=4)),
    max_leaves=12,
)
OBJECTS = st.dictionaries(AWKWARD_TEXT, JSON, max_size=5)

# Splices into a JSON object's text, each valid JSON or not: (what it is, the bytes added before the closing brace).
DEPTHS = st.sampled_from([63, 64, 65, 100, 254, 255, 300, 900, 1000, 1023, 1024, 1025, 5000, 20_000])
SPLICES = st.one_of(
    st.sampled_from(
        [
            b'"n": 1e400',
            b'"n": -1e400',
            b'"n": 1e-400',
            b'"n": -0',
            b'"n": -0.0',
            b'"n": 18446744073709551616',
            b'"n": ' + b"9" * 5000,
            b'"userId": ' + b"1" * 5000,
            b'"userId": 1e400',
            b'"n": NaN',
            b'"n": Infinity',
            b'"n": -Infinity',
            b'"s": "\\ud800"',
            b'"s": "\\udfff\\ud800"',
            b'"s": "\\ud83d\\ude00"',
            b'"s": "a\\u0000b"',
            b'"\\u0000": 1',
            b'"s": "\\\\u0000"',
            b'"s": "\\\\\\u0000"',
            b'"userId": {"a": 1}',
            b'"userId": "dup-1", "userId": "dup-2"',
            b'"type": "track", "type": "bogus"',
            b'"batch": 1',
            b'"timestamp": "0001-01-01T00:00:00+05:00"',
            b'"timestamp": "9999-12-31T23:59:59-05:00"',
            b'"sentAt": "0001-01-01T00:00:00Z", "timestamp": "9999-12-31T23:59:59Z"',
            b'"messageId": "' + b"m" * 10_240 + b'"',
            b'"context": {"consent": {"categoryPreferences": {"\\u0000": true, "Ads": "yes"}}}',
            b'"integrations": {"All": "no", "Hook": {"x": [1]}}',
        ]
    ),
    DEPTHS.map(lambda n: b'"deep": ' + b"[" * n + b"]" * n),
    DEPTHS.map(lambda n: b'"deep": ' + b'{"a":' * n + b"1" + b"}" * n),
    DEPTHS.map(lambda n: b'"properties": ' + b'{"a":' * n + b"{}" + b"}" * n),
)
BAD_BYTES = st.sampled_from([b"\x00", b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"])
BOMS = st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])


def splice(body: bytes, addition: bytes) -> bytes:
    """`addition` (members of an object) added at the end of a JSON object's text."""
    if not body.endswith(b"}"):
        return body + addition
    inner = body[:-1].rstrip()
    return inner + (b"" if inner.endswith(b"{") else b", ") + addition + b"}"


@st.composite
def mangled(draw: st.DrawFn, body: bytes) -> tuple[bytes, bool]:
    """`body`, perhaps broken on the wire; and whether it is still the JSON it was (True: unchanged)."""
    how = draw(st.sampled_from(["as is", "as is", "as is", "splice", "splice", "bytes", "bom", "cut", "charset"]))
    if how == "splice":
        return splice(body, draw(SPLICES)), False
    if how == "bytes":
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(BAD_BYTES) + body[at:], False
    if how == "bom":
        return draw(BOMS) + body, False
    if how == "cut":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))], False
    if how == "charset":
        text = body.decode()
        return text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1"])), "replace"), False
    return body, True


@functools.cache
def gzip_bomb() -> bytes:
    """A ~480 KB gzip (under the 500 KB body limit) that inflates to 480 MB of zeros: made once per session."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([*(deflate.compress(zeros) for _ in range(480)), deflate.flush()])


@functools.cache
def small_bomb() -> bytes:
    """A 1 KB gzip that inflates to 1 MB: past every limit, cheap to send often."""
    return gzip.compress(bytes(1 << 20))


ENCODINGS = st.sampled_from(
    [None] * 6 + ["gzip", "gzip", "gzip", "truncated gzip", "not gzip", "two members", "bomb", "small bomb"]
    + ["GZIP", " gzip ", "deflate", "br", "identity", "gzip, identity", "x-gzip", "compress", "\u00e9"]
)  # fmt: skip


def encode(body: bytes, encoding: str | None) -> tuple[bytes, str | None]:
    """The body as sent with this Content-Encoding, and the header's value."""
    if encoding in ("gzip", "GZIP", " gzip "):
        return gzip.compress(body), encoding
    if encoding == "truncated gzip":
        packed = gzip.compress(body)
        return packed[: max(1, len(packed) * 2 // 3)], "gzip"
    if encoding == "not gzip":
        return body, "gzip"
    if encoding == "two members":
        return gzip.compress(body) + gzip.compress(b" "), "gzip"
    if encoding == "bomb":
        return gzip_bomb(), "gzip"
    if encoding == "small bomb":
        return small_bomb(), "gzip"
    if encoding == "deflate":
        return zlib.compress(body), encoding
    return body, encoding


CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + ["text/plain"] * 2
    + [None, "", "application/json; charset=utf-8", "application/json; charset=latin-1", "APPLICATION/JSON",
       "application/json; charset=utf-16", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
       "multipart/form-data; boundary=xyz", "application/octet-stream", "text/html", "application/xml", "*/*",
       "application/json\u00e9", ";;;", "application/vnd.api+json"]
)  # fmt: skip


def header_value(value: str) -> str:
    """A header's value as WSGI carries it (latin-1), as a server would pass bytes it does not understand."""
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


def strip_nul(value: Any) -> Any:
    """What ingest stores for a value with NUL characters (PostgreSQL's jsonb has none): U+FFFD instead."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value
