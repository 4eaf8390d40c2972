"""The destination vendors, one module each (or a small package for a vendor with two products).

`VENDORS` is a plain dict, vendor key -> class, found by reading the modules of this package on first use (see
integrations/registry.py): adding a vendor is adding its module. Model choices, the admin form, the workspace
importer, the Event Tester and the contract tests all derive from it.
"""

from __future__ import annotations

from integrations.registry import found_on_first_use
from integrations.vendors.contract import Vendor
from integrations.vendors.results import DeliveryError, Result

__all__ = ["VENDORS", "DeliveryError", "Result", "Vendor"]
__getattr__ = found_on_first_use(__name__, "VENDORS", Vendor, "key")
