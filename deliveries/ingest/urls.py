"""The Tracking API's and the webhooks' URLs, under /v1/."""

from __future__ import annotations

from django.urls import path

from deliveries.ingest.tracking import tracking_view
from deliveries.ingest.webhooks import webhook_view
from integrations.spec import EVENT_TYPES

ENDPOINTS = (*EVENT_TYPES, "batch", "import")

# analytics.js 2.0 (analytics-next) posts to `{apiHost}/` + the first letter of the type, and its batching
# strategy to `{apiHost}/b`, so a page whose snippet sets apiHost to "<hub>/v1" lands on these.
SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias", "b": "batch"}

urlpatterns = [
    path(route, tracking_view, {"endpoint": endpoint}, name=f"tracking-{endpoint}" if not slash else None)
    for endpoint in ENDPOINTS
    for slash, route in ((False, endpoint), (True, f"{endpoint}/"))
] + [path(short, tracking_view, {"endpoint": endpoint}) for short, endpoint in SHORT_PATHS.items()]
urlpatterns += [path("webhooks/<str:write_key>", webhook_view, name="webhook")]
