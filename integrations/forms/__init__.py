"""The admin's forms for sources and destinations, and the write-only secrets inputs they share."""

from integrations.forms.destination import DestinationForm
from integrations.forms.secrets import credential_keys, credential_masks, function_kinds, vendor_kinds
from integrations.forms.source import SourceForm

__all__ = ["DestinationForm", "SourceForm", "credential_keys", "credential_masks", "function_kinds", "vendor_kinds"]
