from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: answers without touching the database (also the benchmarks' floor)."""
    return HttpResponse(b'{"ok":true}', content_type="application/json")


urlpatterns = [
    path("v1/", include("deliveries.ingest.urls")),
    path("api/", include("deliveries.api.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
