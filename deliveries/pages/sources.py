"""Try a payload: a webhook source's page shows the events a pasted body would make, storing and sending nothing.

The source page itself is integrations' SourceAdmin; the dry run needs the Tracking API's normalisation,
which lives here (integrations never imports deliveries), so this app extends that admin with the page.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from deliveries.ingest.tracking import RequestError
from deliveries.ingest.webhooks import map_webhook, parse_webhook_json
from deliveries.pages.base import page_context
from integrations import admin as integrations_admin
from integrations.models import Source
from integrations.webhooks import FUNCTIONS, Incoming, WebhookError


class SourceAdmin(integrations_admin.SourceAdmin):
    def get_urls(self) -> list[Any]:
        try_url = path(
            "<path:object_id>/try/", self.admin_site.admin_view(self.try_view), name="integrations_source_try"
        )
        return [try_url, *super().get_urls()]

    def change_context(self, request: HttpRequest, source: Source) -> dict[str, Any]:
        context = super().change_context(request, source)
        if source.is_webhook:
            context["try_url"] = reverse("admin:integrations_source_try", args=[source.pk])
        return context

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Show the events a pasted payload would make, without storing or sending anything."""
        source = get_object_or_404(Source, pk=object_id)
        if not self.has_view_permission(request, source):
            raise PermissionDenied
        if source.kind not in FUNCTIONS:
            messages.info(request, "Only webhook sources have a source function to try.")
            return HttpResponseRedirect(reverse("admin:integrations_source_change", args=[source.pk]))
        # The first visit starts from the last body the tool sent (the webhook capture of Segment's functions).
        payload = request.POST.get("payload", "") if request.method == "POST" else source.last_request_body
        outcome = dry_run(source, payload.encode()) if payload.strip() else None
        context = {
            **page_context(self, request, f"Try a payload: {source.name}"),
            "original": source,
            "payload": payload,
            "from_last_request": request.method != "POST" and bool(payload),
            "outcome": outcome,
        }
        return TemplateResponse(request, "admin/integrations/source/try.html", context)


def dry_run(source: Source, body: bytes) -> dict[str, Any]:
    """What the webhook endpoint would do with this body, short of checking the signature and storing."""
    now = timezone.now()
    try:
        function = FUNCTIONS[source.kind].for_source(source)
        payloads, rejections = map_webhook(function, Incoming(body, {}, parse_webhook_json(body), now))
    except (RequestError, WebhookError) as exc:
        return {"error": f"{exc.code}: {exc.message}", "status": exc.status}
    except Exception as exc:  # a bug in a source function: show it here rather than a server error page
        return {"error": f"internal_error: the source function failed ({type(exc).__name__}).", "status": 500}
    for payload in payloads:
        payload.pop("_timestamp", None)
    return {
        "events": [orjson.dumps(p, option=orjson.OPT_INDENT_2).decode() for p in payloads],
        "rejections": [f"event {r.index}: {r.code}: {r.reason}" for r in rejections],
    }
