"""The destination vendors, one module each (or a small package for a vendor with two products).

`VENDORS` is a plain dict, vendor key -> class, found by reading the modules of this package on first use (see
integrations/registry.py): adding a vendor is adding its module. Model choices, the admin form, the workspace
importer, the Event Tester and the contract tests all derive from it.
"""

from __future__ import annotations

from typing import Any

from integrations.registry import discover
from integrations.vendors.contract import Vendor
from integrations.vendors.results import DeliveryError, Result

__all__ = ["VENDORS", "DeliveryError", "Result", "Vendor"]


def __getattr__(name: str) -> Any:
    # Found on first use, not at import: the vendor modules import this package's contract first.
    if name == "VENDORS":
        vendors = globals()["VENDORS"] = discover(__name__, Vendor, "key")
        return vendors
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
