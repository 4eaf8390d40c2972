"""How the admin pages show times, ids, statuses, errors and recorded HTTP exchanges (shared by every page)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from deliveries.models import Attempt, Delivery
from integrations.models import Destination

ID_CHARS = 9  # enough to tell ids apart in the list (a UUID's first group); the event page shows them whole


def moment(value: datetime, precise: bool = False) -> str:
    """Format a time to the second (or millisecond) in the current time zone, not as "8:10 a.m."."""
    local = timezone.localtime(value)
    if precise:
        return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"
    return f"{local:%Y-%m-%d}\xa0{local:%H:%M:%S}"  # one line in the list


def compact_moment(value: datetime) -> str:
    """The time alone when it is today, else the date and minute; the exact moment in the tooltip."""
    local = timezone.localtime(value)
    if local.date() == timezone.localdate():
        text = f"{local:%H:%M:%S}"
    else:
        text = f"{local:%b}\xa0{local.day}\xa0{local:%H:%M}"
    return format_html('<span title="{}">{}</span>', moment(value, precise=True), text)


def until(value: datetime) -> str:
    seconds = (value - timezone.now()).total_seconds()
    text = "due now" if seconds <= 0 else f"in {duration(seconds * 1000)}"
    return format_html('<span title="{}">{}</span>', moment(value, precise=True), text)


def short_id(value: str) -> str:
    """Shorten a long identifier (a UUID) for the list, with the whole value as a tooltip."""
    if len(value) <= ID_CHARS + 1:
        return value or "-"
    return format_html('<span title="{}">{}</span>', value, Truncator(value).chars(ID_CHARS))


ERROR_CHARS = 80


def status_badge(delivery: Delivery) -> str:
    return format_html(
        '<span class="status status-{}">{}</span>', delivery.status, delivery.get_status_display().capitalize()
    )


def error_summary(delivery: Delivery | Attempt, chars: int = ERROR_CHARS) -> str:
    """The error code and the start of the message (whole in the tooltip), then how to fix it when cdphub
    knows; a filter's reason for filtered."""
    if not delivery.error_code and not delivery.error_message:
        return "-"
    return format_html(
        '<span class="error" title="{}"><code>{}</code> {}</span>{}',
        delivery.error_message,
        delivery.error_code,
        Truncator(delivery.error_message).chars(chars),
        hint_line(delivery.hint),
    )


def attempts_text(delivery: Delivery) -> str:
    """Tries that count, and those the vendor turned away for a rate limit or quota (they do not count)."""
    if not delivery.throttled:
        return str(delivery.attempts)
    return format_html(
        '{} <span class="throttled" title="{}">+ {} throttled</span>',
        delivery.attempts,
        "The vendor asked to slow down (rate limit, concurrency or quota): these tries waited and do not count.",
        delivery.throttled,
    )


def hint_line(hint: str) -> str:
    return format_html('<div class="hint"><b>How to fix:</b> {}</div>', hint) if hint else ""


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


def render_exchanges(exchanges: Sequence[dict[str, Any]], open_last: bool = False) -> str:
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
        items.append(
            format_html(
                '<details class="exchange"{}><summary><span class="method">{}</span> {} <span class="arrow">→</span> '
                '<span class="outcome{}">{}</span> <span class="quiet">· {}</span></summary>{}</details>',
                " open" if open_last and number == len(exchanges) else "",
                method,
                url,
                " ok" if 200 <= status < 300 else " bad",
                outcome,
                duration(exchange.get("duration_ms")),
                format_html_join(
                    "", '<div class="exchange-part"><div class="exchange-label">{}</div><pre>{}</pre></div>', parts
                ),
            )
        )
    return format_html_join("", "{}", ((item,) for item in items))


def destination_link(destination: Destination) -> str:
    url = reverse("admin:integrations_destination_change", args=[destination.pk])
    return format_html('<a href="{}">{}</a>', url, destination.name)
