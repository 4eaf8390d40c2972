from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

from deliveries.api.signal import SignalIntegrations


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: answers without touching the database (also the benchmarks' floor)."""
    return HttpResponse(b'{"ok":true}', content_type="application/json")


urlpatterns = [
    # Datafly Signal's management call, before the Tracking API's /v1/ (deliveries/api/signal.py).
    path("v1/admin/integrations", SignalIntegrations.as_view(), name="signal-integrations"),
    path("v1/", include("deliveries.ingest.urls")),
    path("api/", include("deliveries.api.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
