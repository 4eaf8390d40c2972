"""Results and DeliveryError: what a delivery try comes to."""

from __future__ import annotations

from integrations.vendors.results import DeliveryError, Result


def test_a_result_is_ok_only_when_delivered() -> None:
    assert Result("delivered").ok
    assert not Result("retry").ok
    assert not Result("failed").ok


def test_a_delivery_error_becomes_a_result_with_its_retry_class() -> None:
    error = DeliveryError(
        "Slow down", code="rate_limited", retryable=True, retry_after=20.0, hint="Wait.", status_code=429
    )

    result = error.result([{"request": {}}])

    assert result == Result(
        "retry",
        status_code=429,
        error_code="rate_limited",
        error_message="Slow down",
        hint="Wait.",
        retry_after=20.0,
        exchanges=[{"request": {}}],
    )
    assert DeliveryError("Bad").result([]).outcome == "failed"
