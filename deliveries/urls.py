from django.urls import path

from deliveries.tracking import tracking_view

ENDPOINTS = ("identify", "track", "page", "screen", "group", "alias", "batch", "import")

urlpatterns = [
    path(route, tracking_view, {"endpoint": endpoint}, name=f"tracking-{endpoint}" if not slash else None)
    for endpoint in ENDPOINTS
    for slash, route in ((False, endpoint), (True, f"{endpoint}/"))
]
