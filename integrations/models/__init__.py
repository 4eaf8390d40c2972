"""Connections: sources (where events come from), destinations (where they go), and the rows vendors keep their
shared state in (tokens, locks)."""

from integrations.models.destinations import MAX_RETRY_DEADLINE, Destination, routing_problems, vendor_choices
from integrations.models.sources import HTTP, Source, new_write_key, source_kinds
from integrations.models.vendor_state import AccessToken, DatabaseState, VendorLock

__all__ = [
    "HTTP",
    "MAX_RETRY_DEADLINE",
    "AccessToken",
    "DatabaseState",
    "Destination",
    "Source",
    "VendorLock",
    "new_write_key",
    "routing_problems",
    "source_kinds",
    "vendor_choices",
]
