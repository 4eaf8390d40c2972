"""The replay pages: the list of replays, the form with its dry run, and each replay's progress page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from deliveries.models import Replay
from deliveries.pages.base import page_context
from deliveries.pages.display import compact_moment
from deliveries.pages.replay import task
from deliveries.pages.replay.dry_run import EXACT_LIMIT, SAMPLE, WINDOW, DryRun, dry_run
from deliveries.pages.replay.form import ReplayForm, initial_from
from deliveries.pages.replay.progress import progress
from deliveries.pages.replay.selection import MAX_EVENTS, delivery_status
from integrations.models import Destination


class ReplayAdmin(admin.ModelAdmin):
    list_display = ["created", "by", "description", "destinations_", "status_", "progress_", "counts"]
    list_display_links = ["created"]
    list_filter = ["status"]
    list_select_related = ["created_by"]
    list_per_page = 50
    show_full_result_count = False

    class Media:
        css = {"all": ["deliveries/replay.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Replay]:
        return super().get_queryset(request).prefetch_related("destinations")

    def get_urls(self) -> list[URLPattern]:
        progress_url = path(
            "<int:replay_id>/progress/",
            self.admin_site.admin_view(self.progress_view),
            name="deliveries_replay_progress",
        )
        return [progress_url, *super().get_urls()]

    def has_change_permission(self, request: HttpRequest, obj: Replay | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Replay | None = None) -> bool:
        return False

    # Pages

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """The replay form: choose events and destinations, count (a dry run), then replay."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        counts: list[DryRun] = []
        if request.method == "POST":
            form = ReplayForm(request.POST)
            if form.is_valid():
                criteria = form.criteria()
                destinations = list(form.cleaned_data["destinations"])
                include = form.cleaned_data["include_delivered"]
                if request.POST.get("replay"):
                    replay = start(request, criteria, destinations, include)
                    return HttpResponseRedirect(reverse("admin:deliveries_replay_change", args=[replay.pk]))
                counts = dry_run(criteria, destinations, include)
        else:
            form = ReplayForm(initial=initial_from(request))
        selected = form["events"].value() or ""
        selection = [part for part in str(selected).split(",") if part.strip()]
        to_send = sum(count.to_send for count in counts)
        context = {
            **page_context(self, request, "Replay events"),
            "form": form,
            "selection": selection,
            "counts": counts,
            "to_send": to_send,
            "replay_label": replay_label(counts),
            "too_many": any(count.more or count.matched > MAX_EVENTS for count in counts),
            "max_events": MAX_EVENTS,
            "exact_limit": EXACT_LIMIT,
            "sample": SAMPLE,
            "window": WINDOW,
            "estimates": any(count.estimated or count.dropped_estimated for count in counts),
            "any_status": form.is_bound and form.is_valid() and delivery_status(form.criteria()) == "any",
            "warnings": [
                (d.pk, d.name, d.vendor_class.replay_warning)
                for d in form.fields["destinations"].queryset
                if d.vendor_class.replay_warning
            ],
            "filter_url": reverse("admin:deliveries_replay_add"),
            "time_zone": timezone.get_current_timezone_name(),
            "filter_fields": [form[name] for name in ("source", "since", "until", "type", "event", "delivery_status")],
        }
        return TemplateResponse(request, "admin/deliveries/replay/form.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The progress page: a bar the page's script keeps up to date, and the counts."""
        replay = get_object_or_404(Replay.objects.select_related("created_by"), pk=object_id)
        if not self.has_view_permission(request, replay):
            raise PermissionDenied
        context = {
            **page_context(self, request, f"Replay {replay.pk}"),
            "original": replay,
            "destinations": replay.destinations.defer("credentials").order_by("name"),
            "state": progress(replay),
            "progress_url": reverse("admin:deliveries_replay_progress", args=[replay.pk]),
            "deliveries_url": reverse("admin:deliveries_delivery_changelist") + f"?replay__id__exact={replay.pk}",
        }
        return TemplateResponse(request, "admin/deliveries/replay/progress.html", context)

    def progress_view(self, request: HttpRequest, replay_id: int) -> JsonResponse:
        replay = get_object_or_404(Replay, pk=replay_id)
        if not self.has_view_permission(request, replay):
            raise PermissionDenied
        return JsonResponse(progress(replay))

    # Columns

    @admin.display(description="Created", ordering="created_at")
    def created(self, replay: Replay) -> str:
        return compact_moment(replay.created_at)

    @admin.display(description="By", ordering="created_by__username")
    def by(self, replay: Replay) -> str:
        return replay.created_by.get_username() if replay.created_by else "-"

    @admin.display(description="Destinations")
    def destinations_(self, replay: Replay) -> str:
        return format_html_join(", ", "{}", ((d.name,) for d in replay.destinations.all()))

    @admin.display(description="Status", ordering="status")
    def status_(self, replay: Replay) -> str:
        return format_html(
            '<span class="replay-status replay-{}">{}</span>', replay.status, replay.get_status_display().capitalize()
        )

    @admin.display(description="Progress")
    def progress_(self, replay: Replay) -> str:
        state = progress(replay) if replay.status != Replay.Status.DONE else {"percent": 100}
        return format_html('<progress max="100" value="{}" title="{}%"></progress>', state["percent"], state["percent"])

    @admin.display(description="Counts")
    def counts(self, replay: Replay) -> str:
        parts = [f"{replay.queued:,} queued"]
        skipped = replay.skipped_delivered + replay.skipped_filtered
        if skipped:
            parts.append(f"{skipped:,} skipped")
        if replay.status == Replay.Status.DONE:
            parts.append(f"{replay.delivered:,} delivered")
            if replay.failed:
                parts.append(f"{replay.failed:,} failed")
        return " · ".join(parts)


def replay_label(counts: list[DryRun]) -> str:
    total = sum(count.to_send for count in counts)
    noun = "event" if total == 1 else "events"
    if len(counts) > 1:
        return f"Replay {total:,} {noun} to {len(counts)} destinations"
    return f"Replay {total:,} {noun}"


def start(request: HttpRequest, criteria: dict[str, Any], destinations: list[Destination], include: bool) -> Replay:
    """Record the replay and start its task; say which destinations hold their deliveries."""
    replay = task.start(criteria, destinations, include, request.user)
    held = sorted(d.name for d in destinations if d.paused)
    if held:
        messages.warning(
            request, f"Paused: {', '.join(held)}. The replayed deliveries wait there until the destination is resumed."
        )
    return replay
