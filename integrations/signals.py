"""Signals integrations sends to the apps built on it (integrations never imports them)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with destination_ids=[...] once destinations are resumed or enabled in the admin: their waiting
# deliveries can go now. The delivery engine listens and kicks them instead of waiting for its sweeper.
destinations_resumed = Signal()
