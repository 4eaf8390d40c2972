"""What a delivery try comes to: a Result per event, or a DeliveryError raised inside a vendor to end it.

The engine turns Results into Delivery and Attempt rows; vendors and the HTTP client only build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["delivered", "retry", "throttled", "failed", "filtered"]


@dataclass
class Result:
    """What happened to one event: the delivery task turns it into Delivery and Attempt rows.

    "throttled" means the vendor turned the call away for a rate limit, a concurrency limit or a quota: the
    delivery waits `retry_after` seconds without counting as an attempt, and the whole destination waits with
    it. `defer` (a daily quota) lets it wait past the retry deadline, for the quota's reset. "filtered" means
    the destination declined the event when it was offered (a function with no handler for it, an insert
    function that dropped it): not sent, not an error, with the reason. `logs`: a function's console output.
    """

    outcome: Outcome
    status_code: int | None = None
    error_code: str = ""
    error_message: str = ""
    hint: str = ""
    retry_after: float | None = None
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    defer: bool = False
    logs: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


class DeliveryError(Exception):
    """Raised inside a vendor to end a delivery; `retryable` decides between retry and failed, `throttled`
    (a rate limit or quota) makes it wait without counting as an attempt."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str = "",
        status_code: int | None = None,
        throttled: bool = False,
        defer: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.hint = hint
        self.status_code = status_code
        self.throttled = throttled
        self.defer = defer

    @property
    def outcome(self) -> Outcome:
        return "throttled" if self.throttled else "retry" if self.retryable else "failed"

    def result(self, exchanges: list[dict[str, Any]]) -> Result:
        return Result(
            self.outcome,
            status_code=self.status_code,
            error_code=self.code,
            error_message=self.message,
            hint=self.hint,
            retry_after=self.retry_after,
            exchanges=exchanges,
            defer=self.defer,
        )
