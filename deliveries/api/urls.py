"""/api/v1/ (the router's resources), /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI, static files)."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from deliveries.api.deliveries import DeliveryViewSet
from deliveries.api.events import EventViewSet
from deliveries.api.replays import ReplayViewSet

router = DefaultRouter()
router.trailing_slash = "/?"  # optional: DefaultRouter(trailing_slash=...) only knows "/" or none
router.register("events", EventViewSet, basename="event")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("replays", ReplayViewSet, basename="replay")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
