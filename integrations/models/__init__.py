"""Connections: sources (where events come from), destinations (where they go), and the rows vendors keep their
shared state in (tokens, locks), and the management API's tokens."""

from integrations.models.api_tokens import ApiToken
from integrations.models.destinations import MAX_RETRY_DEADLINE, Destination, routing_problems, vendor_choices
from integrations.models.functions import Function, FunctionVersion
from integrations.models.sources import HTTP, Source, new_write_key, source_kinds
from integrations.models.vendor_state import AccessToken, DatabaseState, VendorLock

__all__ = [
    "HTTP",
    "MAX_RETRY_DEADLINE",
    "AccessToken",
    "ApiToken",
    "DatabaseState",
    "Destination",
    "Function",
    "FunctionVersion",
    "Source",
    "VendorLock",
    "new_write_key",
    "routing_problems",
    "source_kinds",
    "vendor_choices",
]
