"""The Segment spec's vocabulary that both apps speak: the event types (https://segment.com/docs/connections/spec/)."""

from __future__ import annotations

EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
