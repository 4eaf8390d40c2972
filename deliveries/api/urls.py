"""/api/v1/ (the router's resources), /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI, static files)."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from deliveries.api import openapi  # noqa: F401 - registers the API token's security scheme
from deliveries.api.deliveries import DeliveryViewSet
from deliveries.api.destinations import DestinationViewSet
from deliveries.api.events import EventViewSet
from deliveries.api.functions import FunctionViewSet
from deliveries.api.replays import ReplayViewSet
from deliveries.api.sources import SourceViewSet
from deliveries.api.workspace import WorkspaceViewSet

router = DefaultRouter()
router.trailing_slash = "/?"  # with or without the slash: the argument takes only on/off, the attribute a regex
router.register("sources", SourceViewSet)
router.register("destinations", DestinationViewSet)
router.register("functions", FunctionViewSet)
router.register("events", EventViewSet, basename="event")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("replays", ReplayViewSet, basename="replay")
router.register("workspace", WorkspaceViewSet, basename="workspace")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
