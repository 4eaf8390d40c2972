"""How the admin shows what a vendor or a function did: its recorded HTTP exchanges and its console output.

The Debugger, the delivery page, Event Delivery's samples, the Event Tester and a function's Run test all show them
the same way. Both come recorded with secrets already redacted (integrations/vendors/http.py, the functions
runtime); nothing here sees a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

LOG_LEVELS = ("log", "info", "debug", "warn", "error")


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def pretty_body(body: Any) -> str:
    """A recorded body as indented JSON when it is JSON (a truncated one is not), else as it was."""
    if not isinstance(body, str):
        return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return body


def http_message(first_line: str, headers: dict[str, Any] | None, body: Any) -> str:
    lines = [first_line, *(f"{name}: {value}" for name, value in (headers or {}).items())]
    text = pretty_body(body) if body not in (None, "") else ""
    return "\n".join(lines) + ("\n\n" + text if text else "")


def render_exchanges(exchanges: Sequence[dict[str, Any]], open_last: bool = False, open_all: bool = False) -> str:
    """Every HTTP exchange of an attempt, as recorded (already redacted): a summary line that opens on both messages."""
    if not exchanges:
        return format_html('<span class="quiet">{}</span>', "No HTTP request was made.")
    items = []
    for number, exchange in enumerate(exchanges, 1):
        request = exchange.get("request") or {}
        response = exchange.get("response")
        outcome = f"HTTP {response.get('status')}" if response else exchange.get("error") or "no answer"
        status = response.get("status", 0) if response else 0
        method, url = request.get("method", ""), request.get("url", "")
        parts = [("Request", http_message(f"{method} {url}", request.get("headers"), request.get("body")))]
        if response:
            parts.append(("Response", http_message(outcome, response.get("headers"), response.get("body"))))
        else:
            parts.append(("Response", outcome))
        opened = open_all or (open_last and number == len(exchanges))
        note = exchange.get("note")  # e.g. Run test's "not sent: recorded and answered with an empty 200"
        items.append(
            format_html(
                '<details class="exchange"{}><summary><span class="method">{}</span> {} <span class="arrow">→</span> '
                '<span class="outcome{}">{}</span> <span class="quiet">· {}</span></summary>{}{}</details>',
                " open" if opened else "",
                method,
                url,
                " ok" if 200 <= status < 300 else " bad",
                outcome,
                duration(exchange.get("duration_ms")),
                format_html('<div class="exchange-note">{}</div>', note) if note else "",
                format_html_join(
                    "", '<div class="exchange-part"><div class="exchange-label">{}</div><pre>{}</pre></div>', parts
                ),
            )
        )
    return format_html_join("", "{}", ((item,) for item in items))


def render_logs(logs: Sequence[dict[str, Any]] | None) -> SafeString:
    """A function's console output, one line per call, coloured by level; nothing at all when it logged nothing."""
    if not logs:
        return SafeString("")
    lines = [
        (level if level in LOG_LEVELS else "log", level, line.get("message", ""))
        for line in logs
        if isinstance(line, dict)
        for level in [str(line.get("level") or "log")]
    ]
    return format_html(
        '<div class="console"><div class="exchange-label">Console</div><pre class="console-lines">{}</pre></div>',
        format_html_join("", '<span class="log log-{}"><span class="log-level">{}</span> {}</span>', lines),
    )
