"""The destination vendors: a plain dict is the registry; model choices and forms derive from it."""

from __future__ import annotations

from integrations.vendors.base import DeliveryError, Result, Vendor
from integrations.vendors.marketo import Marketo
from integrations.vendors.segment import Segment
from integrations.vendors.sfmc import SfmcDataExtension, SfmcJourney
from integrations.vendors.webhook import Webhook

VENDORS: dict[str, type[Vendor]] = {
    SfmcJourney.key: SfmcJourney,
    SfmcDataExtension.key: SfmcDataExtension,
    Marketo.key: Marketo,
    Webhook.key: Webhook,
    Segment.key: Segment,
}

__all__ = ["VENDORS", "DeliveryError", "Result", "Vendor"]
