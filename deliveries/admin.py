"""The events-and-deliveries app's admin: the marketer's pages (deliveries/pages/) registered on the site."""

from __future__ import annotations

from django.contrib import admin

from deliveries.models import Alert, AlertRule, Delivery, Event, Replay, RetentionPolicy
from deliveries.pages.alerts import AlertAdmin, AlertRuleAdmin
from deliveries.pages.deliveries import DeliveryAdmin
from deliveries.pages.events import EventAdmin
from deliveries.pages.replay.views import ReplayAdmin
from deliveries.pages.retention import RetentionPolicyAdmin
from deliveries.pages.sources import SourceAdmin
from integrations.models import Source

admin.site.register(Event, EventAdmin)
admin.site.register(Delivery, DeliveryAdmin)
admin.site.register(Replay, ReplayAdmin)
admin.site.register(AlertRule, AlertRuleAdmin)
admin.site.register(Alert, AlertAdmin)
admin.site.register(RetentionPolicy, RetentionPolicyAdmin)  # superusers only
# The source page gains "Try a payload" (integrations' SourceAdmin, extended here: see pages/sources.py).
admin.site.unregister(Source)
admin.site.register(Source, SourceAdmin)
