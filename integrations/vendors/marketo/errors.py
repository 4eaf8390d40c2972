"""What Marketo's error codes mean for a delivery (§2.6): retried, throttled (606 the rate window, 615 the
concurrency limit, 607 the daily quota) or failed, each with its hint. Marketo answers most errors with HTTP 200,
`success: false` and a code: https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from integrations.vendors.contract import DeliveryError, hints_beside

QUOTA_ZONE = ZoneInfo("America/Chicago")  # the daily quota resets at midnight US Central (§2.7)
TOKEN_CODES = {"601", "602"}
TRANSIENT_CODES = {"500", "502", "604", "608", "611", "614", "713", "719"}
ERROR_CODES = {
    "606": "rate_limited",
    "615": "concurrency_limited",
    "607": "daily_quota",
    "1004": "lead_not_found",
    "1006": "field_not_found",
    "1013": "activity_type_not_found",
}
# One sentence per code (and per cdphub-side case) that says what to do; "610" is the wrong-host hint.
HINTS = hints_beside(__file__)


def seconds_to_quota_reset(now: datetime | None = None) -> float:
    """Seconds until the next midnight in Chicago, measured in UTC so a DST change that day counts."""
    local = (now or datetime.now(UTC)).astimezone(QUOTA_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=QUOTA_ZONE)
    return (midnight.astimezone(UTC) - local.astimezone(UTC)).total_seconds()


WINDOW = re.compile(r"with\s*in\s*'(\d+(?:\.\d+)?)'\s*sec", re.I)


def marketo_error(code: str, message: str) -> DeliveryError:
    """What a Marketo error code (response or record level) means for the delivery (§2.6)."""
    throttled = code in ("606", "607", "615")
    error = DeliveryError(
        f"Marketo error {code}: {message}",
        code=ERROR_CODES.get(code, f"marketo_{code}"),
        hint=HINTS.get(code, ""),
        status_code=200,
        retryable=code in TRANSIENT_CODES | TOKEN_CODES,
        throttled=throttled,
        defer=code == "607",  # waits past the retry deadline for the reset: the events are not lost
    )
    if throttled:  # 606: the rate window; 615: a short backoff with jitter; 607: the daily reset
        error.retry_after = (
            rate_window(message)
            if code == "606"
            else random.uniform(2, 5)
            if code == "615"
            else seconds_to_quota_reset()
        )
    return error


def rate_window(message: str) -> float:
    """The window a 606 names ("Max rate limit '100' exceeded with in '20' secs"): wait that long, 20 s if unsaid."""
    match = WINDOW.search(message)
    return min(float(match.group(1)), 60.0) if match else 20.0


def first_problem(problems: Any) -> tuple[str, str]:
    """The code and message of the first entry of a Marketo `errors` or `reasons` list."""
    first = problems[0] if isinstance(problems, list) and problems and isinstance(problems[0], dict) else {}
    return str(first.get("code") or "unknown"), str(first.get("message") or "no reason given")


class TooLarge(DeliveryError):
    """HTTP 413: the body is over Marketo's 1 MB; the caller splits the records."""


def skipped(answer: dict[str, Any]) -> DeliveryError:
    """A record Marketo skipped: its reasons (leads) or errors (activities, as the docs show), §2.5."""
    return marketo_error(*first_problem(answer.get("reasons") or answer.get("errors")))
