"""The integrations admin: sources, destinations, functions and API tokens (the deliveries app adds its own pages
beside them)."""

from django.contrib import admin

from integrations.admin.api_tokens import ApiTokenAdmin
from integrations.admin.destinations import DestinationAdmin
from integrations.admin.functions import FunctionAdmin
from integrations.admin.sources import SourceAdmin

admin.site.site_header = "cdphub"
admin.site.site_title = "cdphub"
admin.site.index_title = "Customer data hub"

__all__ = ["ApiTokenAdmin", "DestinationAdmin", "FunctionAdmin", "SourceAdmin"]
