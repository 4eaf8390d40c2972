"""Stripe: verify `Stripe-Signature` and map a Stripe event (a snapshot event, as webhook endpoints send it) to
Segment-spec events. https://docs.stripe.com/webhooks

The Stripe customer is the user: `userId` is the customer id (`cus_…`). An object without a customer (a guest
checkout, a one-off payment) gets `anonymousId` = the buyer's email, lower-cased, when Stripe has one, else the
object's own id (`cs_…`, `pi_…`), so no event is lost and a guest's purchases share one anonymous profile.
Amounts are in major units (19.99 for 1999 cents, 500 for ¥500) with Stripe's decimal rules, currencies upper-case.
A type without a mapping below is kept, named after its type in Title Case ("charge.refunded" → "Charge Refunded").
Every event's messageId is the Stripe event id (Stripe retries and duplicates are stored once), except Invoice Paid:
its messageId is the invoice's (`in_…-paid`), so an endpoint subscribed to both invoice.paid and
invoice.payment_succeeded, which Stripe sends for the same payment, records the payment once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.webhooks.base import (
    Incoming,
    SigningSecret,
    SourceFunction,
    WebhookError,
    from_unix,
    header,
    hmac_digest,
    same,
)


@dataclass
class StripeConfig:
    tolerance: int = 300  # seconds a signature stays valid; 0 turns the timestamp check off

    def check(self) -> list[str]:
        if self.tolerance < 0:
            return ["tolerance: must be 0 or more seconds (300 is Stripe's default, 0 turns the check off)"]
        return []


@dataclass
class StripeSecrets(SigningSecret):
    def check(self) -> list[str]:
        if self.signing_secret.startswith(("sk_", "rk_", "pk_")):
            return [
                "signing_secret: this is a Stripe API key; paste the endpoint's signing secret (whsec_…) from "
                "Stripe → Developers → Webhooks → your endpoint → Signing secret"
            ]
        return []


NAMES = {
    "customer.created": "Customer Created",
    "customer.updated": "Customer Updated",
    "customer.deleted": "Customer Deleted",
    "customer.subscription.created": "Subscription Created",
    "customer.subscription.updated": "Subscription Updated",
    "customer.subscription.deleted": "Subscription Canceled",  # Stripe deletes a subscription when it ends
    "customer.subscription.paused": "Subscription Paused",
    "customer.subscription.resumed": "Subscription Resumed",
    "customer.subscription.trial_will_end": "Subscription Trial Ending",  # sent 3 days before the trial ends
    "checkout.session.completed": "Checkout Completed",
    "invoice.created": "Invoice Created",
    "invoice.finalized": "Invoice Finalized",
    "invoice.upcoming": "Invoice Upcoming",
    "invoice.paid": "Invoice Paid",
    "invoice.payment_succeeded": "Invoice Paid",
    "invoice.payment_failed": "Invoice Payment Failed",
    "invoice.payment_action_required": "Invoice Payment Action Required",
    "payment_intent.succeeded": "Payment Succeeded",
    "payment_intent.payment_failed": "Payment Failed",
}
IDENTIFIES = {"customer.created", "customer.updated"}

# https://docs.stripe.com/currencies#zero-decimal and #three-decimal; every other currency has two decimals.
# fmt: off
ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
                "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
# fmt: on
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}


class Stripe(SourceFunction):
    kind = "stripe"
    label = "Stripe"
    config_class = StripeConfig
    secrets_class = StripeSecrets

    def verify(self, incoming: Incoming) -> None:
        if not self.verifies:
            return
        timestamp, signatures = _parse_signature(header(incoming, "Stripe-Signature"))
        expected = hmac_digest(self.secrets.signing_secret, f"{timestamp}.".encode() + incoming.body).hex()
        if not any(same(expected, signature) for signature in signatures):
            raise WebhookError(
                401,
                "invalid_signature",
                "The Stripe-Signature does not match this source's signing secret: copy the endpoint's signing "
                "secret (whsec_…) from Stripe → Developers → Webhooks → your endpoint → Signing secret.",
            )
        tolerance = self.config.tolerance
        if tolerance and abs(incoming.received_at.timestamp() - timestamp) > tolerance:
            raise WebhookError(
                401,
                "stale_signature",
                f"The Stripe-Signature timestamp is more than {tolerance} s away from cdphub's clock: either this "
                "server's clock is wrong or the request is a replay of an old delivery.",
            )

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        event = _stripe_event(incoming.payload)
        kind, obj = event["type"], event["data"]["object"]
        customer = obj.get("id") if obj.get("object") == "customer" else _id(obj.get("customer"))
        email = _email(obj)
        base: dict[str, Any] = {
            "context": {"integration": {"name": "stripe"}},
            "timestamp": from_unix(event.get("created")),
        }
        if email:
            base["context"]["traits"] = {"email": email}
        if customer:
            base["userId"] = str(customer)
        else:
            base["anonymousId"] = email.lower() if email else str(obj.get("id") or event["id"])
        properties = {
            **PROPERTIES.get(_text(obj.get("object")), _other)(obj),
            "previous": event["data"].get("previous_attributes"),
            "stripeEventId": event["id"],
            "stripeType": kind,
            "livemode": event.get("livemode"),
        }
        name = NAMES.get(kind) or _title(kind)
        message_id = event["id"]
        if name == "Invoice Paid" and obj.get("id"):
            # invoice.paid and invoice.payment_succeeded both report one payment: keep whichever arrives first
            message_id = f"{obj['id']}-paid"
        track = {**base, "type": "track", "event": name, "properties": _compact(properties), "messageId": message_id}
        if kind not in IDENTIFIES:
            return [_compact(track)]
        identify = {**base, "type": "identify", "traits": _traits(obj), "messageId": f"{event['id']}-identify"}
        return [_compact(identify), _compact(track)]


def _parse_signature(value: str) -> tuple[int, list[str]]:
    """The `t` and the `v1` signatures of a Stripe-Signature header (other schemes, such as v0, are ignored)."""
    timestamp, signatures = None, []
    for item in value.split(","):
        key, _, part = item.strip().partition("=")
        if key == "t" and timestamp is None and part.isascii() and part.strip().isdigit():
            timestamp = int(part)
        elif key == "v1" and part.strip():
            signatures.append(part.strip())
    if timestamp is None or not signatures:
        raise WebhookError(
            401,
            "invalid_signature_header",
            "The Stripe-Signature header needs a timestamp (t=…) and at least one v1=… signature: "
            "the request was not signed by a Stripe webhook endpoint.",
        )
    return timestamp, signatures


def _stripe_event(payload: Any) -> dict[str, Any]:
    if isinstance(payload, dict) and payload.get("object") == "v2.core.event":
        raise WebhookError(
            400,
            "invalid_payload",
            "This is a thin event (Stripe event destinations, v2): cdphub needs the whole object. Create the "
            "destination with the Snapshot payload style, or a webhook endpoint in Developers → Webhooks.",
        )
    if not isinstance(payload, dict):
        raise WebhookError(400, "invalid_payload", "The body is not a Stripe event: it must be a JSON object.")
    data = payload.get("data")
    missing = [name for name in ("id", "type") if not isinstance(payload.get(name), str) or not payload[name]]
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        missing.append("data.object")
    if missing:
        raise WebhookError(
            400,
            "invalid_payload",
            f"The body is not a Stripe event: it has no {', '.join(missing)}. Point a Stripe webhook endpoint "
            "(Developers → Webhooks) at this URL.",
        )
    return payload


def _subscription(obj: dict[str, Any]) -> dict[str, Any]:
    items = [item for item in _list(_get(obj, "items", "data")) if isinstance(item, dict)]
    prices = [_dict(item.get("price") or item.get("plan")) for item in items] or [_dict(obj.get("plan"))]
    first = prices[0]
    currency = obj.get("currency") or first.get("currency")
    # A price has unit_amount (None when tiered), a legacy plan has amount; metered items have no quantity.
    amounts = [price.get("unit_amount") if "unit_amount" in price else price.get("amount") for price in prices]
    quantities = [item.get("quantity") for item in items] if items else [obj.get("quantity")]
    counted = all(_number(quantity) for quantity in quantities)
    total = None
    if counted and all(_number(amount) for amount in amounts):
        total = sum(amount * quantity for amount, quantity in zip(amounts, quantities, strict=True))
    return {
        "subscriptionId": obj.get("id"),
        "status": obj.get("status"),
        "planId": first.get("id"),
        "planName": first.get("nickname"),
        "priceIds": [price["id"] for price in prices if price.get("id")] or None,
        "productId": _id(first.get("product")),
        "amount": _money(total, currency),
        "currency": _currency(currency),
        "interval": _get(first, "recurring", "interval") or first.get("interval"),
        "quantity": sum(quantities) if counted else None,
        "trialEnd": from_unix(obj.get("trial_end")),
        "cancelAtPeriodEnd": obj.get("cancel_at_period_end"),
        "canceledAt": from_unix(obj.get("canceled_at")),
    }


def _checkout(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessionId": obj.get("id"),
        "amount": _money(obj.get("amount_total"), obj.get("currency")),
        "currency": _currency(obj.get("currency")),
        "mode": obj.get("mode"),
        "paymentStatus": obj.get("payment_status"),
        "subscriptionId": _id(obj.get("subscription")),
    }


def _invoice(obj: dict[str, Any]) -> dict[str, Any]:
    currency = obj.get("currency")
    # API versions from 2025-03-31 moved invoice.subscription to parent.subscription_details.subscription
    subscription = obj.get("subscription") or _get(obj, "parent", "subscription_details", "subscription")
    return {
        "invoiceId": obj.get("id"),
        "number": obj.get("number"),
        "amountDue": _money(obj.get("amount_due"), currency),
        "amountPaid": _money(obj.get("amount_paid"), currency),
        "currency": _currency(currency),
        "status": obj.get("status"),
        "billingReason": obj.get("billing_reason"),
        "hostedInvoiceUrl": obj.get("hosted_invoice_url"),
        "subscriptionId": _id(subscription),
        "attemptCount": obj.get("attempt_count"),
        "nextPaymentAttempt": from_unix(obj.get("next_payment_attempt")),
    }


def _payment(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "paymentIntentId": obj.get("id"),
        "amount": _money(obj.get("amount"), obj.get("currency")),
        "currency": _currency(obj.get("currency")),
        "status": obj.get("status"),
        "description": obj.get("description"),
        "errorCode": _get(obj, "last_payment_error", "decline_code") or _get(obj, "last_payment_error", "code"),
        "errorMessage": _get(obj, "last_payment_error", "message"),
    }


def _other(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "objectId": obj.get("id"),
        "objectType": obj.get("object"),
        "status": obj.get("status") if isinstance(obj.get("status"), str) else None,
        "amount": _money(obj.get("amount"), obj.get("currency")),
        "currency": _currency(obj.get("currency")),
    }


PROPERTIES = {
    "customer": lambda obj: {"customerId": obj.get("id")},
    "subscription": _subscription,
    "checkout.session": _checkout,
    "invoice": _invoice,
    "payment_intent": _payment,
}


def _traits(customer: dict[str, Any]) -> dict[str, Any]:
    address = customer.get("address") if isinstance(customer.get("address"), dict) else {}
    street = ", ".join(part for part in (address.get("line1"), address.get("line2")) if isinstance(part, str) and part)
    segment_address = {
        "street": street or None,
        "city": address.get("city"),
        "state": address.get("state"),
        "postalCode": address.get("postal_code"),
        "country": address.get("country"),
    }
    return _compact(
        {
            "email": customer.get("email"),
            "name": customer.get("name"),
            "phone": customer.get("phone"),
            "description": customer.get("description"),
            "createdAt": from_unix(customer.get("created")),
            "address": _compact(segment_address) or None,
        }
    )


def _email(obj: dict[str, Any]) -> str | None:
    for value in (
        obj.get("email"),
        obj.get("customer_email"),
        _get(obj, "customer_details", "email"),
        obj.get("receipt_email"),
        _get(obj, "billing_details", "email"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _money(amount: Any, currency: Any) -> float | int | None:
    if not _number(amount) or not isinstance(currency, str):
        return None
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return amount
    digits = 3 if code in THREE_DECIMAL else 2
    return round(amount / 10**digits, digits)


def _currency(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _id(value: Any) -> Any:
    """An id from a field that holds either the id or the expanded object."""
    return value.get("id") if isinstance(value, dict) else value


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _dict(value: Any) -> dict[str, Any]:
    """An object Stripe nests, or an empty one when the payload holds something else there."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _title(kind: str) -> str:
    return " ".join(word.capitalize() for word in kind.replace("_", ".").split(".") if word)


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
