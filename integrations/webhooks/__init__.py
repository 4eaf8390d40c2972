"""Source functions, one module per tool. `FUNCTIONS` is a plain dict, source kind -> class, found by reading the
modules of this package on first use (integrations/registry.py); Source.kind's choices derive from it."""

from __future__ import annotations

from typing import Any

from integrations.registry import discover
from integrations.webhooks.base import Incoming, SourceFunction, WebhookError

__all__ = ["FUNCTIONS", "Incoming", "SourceFunction", "WebhookError"]


def __getattr__(name: str) -> Any:
    if name == "FUNCTIONS":
        functions = globals()["FUNCTIONS"] = discover(__name__, SourceFunction, "kind")
        return functions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
