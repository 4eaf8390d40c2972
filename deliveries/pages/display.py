"""How the admin pages show times, ids, statuses and errors (shared by every page); recorded HTTP exchanges and a
function's console output are shown by integrations/admin/exchanges.py."""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from deliveries.models import Attempt, Delivery
from integrations.admin.exchanges import duration
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


def destination_link(destination: Destination) -> str:
    url = reverse("admin:integrations_destination_change", args=[destination.pk])
    return format_html('<a href="{}">{}</a>', url, destination.name)
