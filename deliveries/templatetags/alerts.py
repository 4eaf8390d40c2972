"""`{% open_alerts destination as alerts %}`: a destination's open alerts, for a page to show (Event Delivery)
without its view knowing about alerts."""

from __future__ import annotations

from django import template

from deliveries.models import Alert
from integrations.models import Destination

register = template.Library()


@register.simple_tag
def open_alerts(destination: Destination) -> list[Alert]:
    """The destination's open alerts, oldest first (on the (destination, resolved_at) index)."""
    return list(
        Alert.objects.filter(destination=destination, resolved_at__isnull=True, is_test=False).order_by("opened_at")
    )
