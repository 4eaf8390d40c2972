"""Source functions, one module per tool: a plain dict is the registry; Source kinds other than http use it."""

from __future__ import annotations

from integrations.webhooks.base import Incoming, SourceFunction, WebhookError
from integrations.webhooks.customerio import CustomerIo
from integrations.webhooks.generic import Generic
from integrations.webhooks.stripe import Stripe
from integrations.webhooks.zendesk import Zendesk

FUNCTIONS: dict[str, type[SourceFunction]] = {
    CustomerIo.kind: CustomerIo,
    Stripe.kind: Stripe,
    Zendesk.kind: Zendesk,
    Generic.kind: Generic,
}

__all__ = ["FUNCTIONS", "Incoming", "SourceFunction", "WebhookError"]
