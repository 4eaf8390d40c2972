"""Source functions, one module per tool. `FUNCTIONS` is a plain dict, source kind -> class, found by reading the
modules of this package on first use (integrations/registry.py); Source.kind's choices derive from it."""

from __future__ import annotations

from integrations.registry import found_on_first_use
from integrations.webhooks.base import Incoming, SourceFunction, WebhookError

__all__ = ["FUNCTIONS", "Incoming", "SourceFunction", "WebhookError"]
__getattr__ = found_on_first_use(__name__, "FUNCTIONS", SourceFunction, "kind")
