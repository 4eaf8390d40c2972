"""Source functions, one module per tool: a plain dict is the registry; Source kinds other than http use it."""

from __future__ import annotations

from integrations.webhooks.base import Incoming, SourceFunction, WebhookError
from integrations.webhooks.customerio import CustomerIo
from integrations.webhooks.generic import Generic

FUNCTIONS: dict[str, type[SourceFunction]] = {
    CustomerIo.kind: CustomerIo,
    Generic.kind: Generic,
}

__all__ = ["FUNCTIONS", "Incoming", "SourceFunction", "WebhookError"]
