"""Replay: send stored events again to chosen destinations, from a Debugger selection or a filter.

The form counts first (a dry run, bounded so it answers fast on millions of events), then a task walks the
matching events in id order, 500 at a time: an event a destination already has is skipped (unless asked), one
in flight is left alone, a failed, retrying, pending or filtered delivery is queued again with a fresh retry
deadline, and a missing one is created. The destination's filter applies, as Segment applies it on replay.
The Replay row keeps the counts; the progress page polls them until every queued delivery has finished.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Case, Count, Exists, F, OuterRef, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django_q.tasks import async_task

from deliveries import engine
from deliveries.display import compact_moment, moment
from deliveries.models import Delivery, Event, Replay
from deliveries.routing import decide
from integrations.models import Destination, Source

log = logging.getLogger("cdphub.replay")

CHUNK = 500  # events per transaction of a replay: short write locks, and progress the page can show
EXACT_LIMIT = 100_000  # the dry run counts exactly up to here, then says "more than"
MAX_EVENTS = 100_000  # per destination and replay: the oldest are taken, a second replay does the rest
MAX_SELECTED = 1_000  # ids in ?events= (a Debugger selection is a page or a few)
WINDOW = 20_000  # the oldest events whose deliveries the dry run counts, to scale to the rest
SAMPLE = 500  # events whose payloads the dry run routes to estimate what each filter drops
DELIVERY_STATUSES = [
    ("any", "Any"),
    ("failed", "Failed"),
    ("retrying", "Retrying"),
    ("filtered", "Filtered"),
    ("delivered", "Delivered"),
    ("never", "Never sent"),
]


# Which events ---------------------------------------------------------------------------------------


def source_ids(destination: Destination) -> list[int]:
    return list(destination.sources.values_list("pk", flat=True))


def base_events(criteria: dict[str, Any], sources: list[int]) -> QuerySet[Event]:
    """The accepted events of these sources the criteria pick, before their delivery status."""
    events = Event.objects.filter(status=Event.Status.ACCEPTED, source_id__in=sources)
    if "events" in criteria:
        return events.filter(pk__in=criteria["events"])
    if criteria.get("source"):
        events = events.filter(source_id=criteria["source"])
    if criteria.get("since"):
        events = events.filter(received_at__gte=parse_datetime(criteria["since"]))
    if criteria.get("until"):
        events = events.filter(received_at__lt=parse_datetime(criteria["until"]))
    if criteria.get("type"):
        events = events.filter(type=criteria["type"])
    if criteria.get("event"):
        events = events.filter(event=criteria["event"])
    return events


def delivery_status(criteria: dict[str, Any]) -> str:
    return "any" if "events" in criteria else criteria.get("delivery_status") or "any"


def events_for(criteria: dict[str, Any], destination: Destination) -> QuerySet[Event]:
    """The accepted events the criteria pick for this destination, from the sources connected to it."""
    events = base_events(criteria, source_ids(destination))
    status = delivery_status(criteria)
    to_here = Delivery.objects.filter(destination=destination, is_test=False)
    if criteria.get("since") and "events" not in criteria:
        # A delivery is made when its event arrives or later: this bounds the (destination, status, created_at) scan.
        to_here = to_here.filter(created_at__gte=parse_datetime(criteria["since"]))
    if status in ("failed", "retrying"):
        # Usually few: read them off the (destination, status, created_at) index, then the events by key.
        events = events.filter(pk__in=to_here.filter(status=status).values("event_id"))
    elif status in ("delivered", "filtered"):
        # Usually most: probe each event's (event, destination) index instead of listing millions of rows.
        events = events.filter(Exists(to_here.filter(event=OuterRef("pk"), status=status)))
    elif status == "never":
        events = events.filter(~Exists(to_here.filter(event=OuterRef("pk"))))
    return events


def describe(criteria: dict[str, Any]) -> str:
    """The criteria in words, for the replay list."""
    if "events" in criteria:
        count = len(criteria["events"])
        return f"{count} selected event{'s' if count != 1 else ''}"
    what = [criteria.get("type") or ""]
    if criteria.get("event"):
        what.append(f"“{criteria['event']}”")
    parts = [" ".join(w for w in what if w) or "All", "events"]
    if criteria.get("source"):
        source = Source.objects.filter(pk=criteria["source"]).values_list("name", flat=True).first()
        parts.append(f"from {source or 'a deleted source'}")
    since, until = parse_datetime(criteria.get("since") or ""), parse_datetime(criteria.get("until") or "")
    if since and until:
        parts.append(f"received {moment(since)} to {moment(until)}")
    elif since:
        parts.append(f"received since {moment(since)}")
    status = criteria.get("delivery_status") or "any"
    if status == "never":
        parts.append("never sent to the destination")
    elif status != "any":
        parts.append(f"whose delivery is {status}")
    return " ".join(parts)


# The dry run ----------------------------------------------------------------------------------------


@dataclass
class DryRun:
    """What a replay would do for one destination (estimates are scaled from the oldest WINDOW events)."""

    destination: Destination
    matched: int
    more: bool  # more than EXACT_LIMIT matched
    delivered: int
    in_flight: int
    dropped: int
    estimated: bool  # delivered, in flight (and matched, for a delivery status) are scaled from a window
    dropped_estimated: bool
    include_delivered: bool

    @property
    def skipped(self) -> int:
        return self.in_flight + (0 if self.include_delivered else self.delivered)

    @property
    def to_send(self) -> int:
        return max(0, min(self.matched, MAX_EVENTS) - self.skipped - self.dropped)


def dry_run(criteria: dict[str, Any], destinations: list[Destination], include_delivered: bool) -> list[DryRun]:
    """Count what a replay would queue per destination: a few bounded queries each, nothing written.

    The events are counted exactly up to EXACT_LIMIT on the (status, received_at) or (source, received_at) index;
    their deliveries are counted on the (event, destination) index for the oldest WINDOW of them and scaled to the
    rest; routing runs on SAMPLE payloads. Destinations fed by the same sources share the event queries.
    """
    status = delivery_status(criteria)
    shared: dict[tuple[int, ...], tuple[int, QuerySet | None, list[dict[str, Any]]]] = {}
    counts = []
    for destination in destinations:
        sources = source_ids(destination)
        key = tuple(sorted(sources))
        if key not in shared:
            base = base_events(criteria, sources).order_by()  # no sort: each LIMIT stops early on the index
            # A failed or retrying status is counted exactly off the deliveries: the events' count is not needed.
            total = 0 if status in ("failed", "retrying") else base.values("pk")[: EXACT_LIMIT + 1].count()
            window = base.values("pk")[:WINDOW] if total > WINDOW else None
            sample = list(base.values_list("payload", flat=True)[:SAMPLE]) if status == "any" else []
            shared[key] = (total, window, sample)
        total, window, sample = shared[key]
        counts.append(_count(criteria, destination, status, total, window, sample, include_delivered))
    return counts


def _count(
    criteria: dict[str, Any],
    destination: Destination,
    status: str,
    total: int,
    window: QuerySet | None,
    sample: list[dict[str, Any]],
    include_delivered: bool,
) -> DryRun:
    events = events_for(criteria, destination).order_by()
    size = min(total, WINDOW)
    estimated = window is not None
    scope: Any = window if estimated else events.values("pk")  # few enough to count every one exactly
    scale = min(total, MAX_EVENTS) / max(size, 1) if estimated else 1.0
    if status in ("failed", "retrying"):  # exact: read off the destination's status index, usually few
        matched = events.values("pk")[: EXACT_LIMIT + 1].count()
        by_status, estimated, scale = {status: matched}, False, 1.0
    else:
        # From the events' side, on the (event, destination) index: "destination_id + 0" keeps SQLite from
        # walking the destination's index instead (~920,000 rows of a busy destination: 552 ms against 40 ms).
        of_events = (
            Delivery.objects.filter(event_id__in=scope, is_test=False)
            .alias(to=F("destination_id") + 0)
            .filter(to=destination.pk)
            .order_by()
        )
        by_status = dict(of_events.values_list("status").annotate(n=Count("event_id", distinct=True)))
    if status == "any":
        matched = min(total, EXACT_LIMIT)
    elif status == "never":
        exact = window is None
        matched = events.values("pk")[: EXACT_LIMIT + 1].count() if exact else size - sum(by_status.values())
        by_status = {}
    elif status not in ("failed", "retrying"):
        matched = by_status.get(status, 0)
        by_status = {status: matched}
    if status != "any":
        matched = round(matched * scale)
        sample = list(events.values_list("payload", flat=True)[:SAMPLE])
    delivered = round(by_status.get(Delivery.Status.DELIVERED, 0) * scale)
    in_flight = round(by_status.get(Delivery.Status.IN_FLIGHT, 0) * scale)
    more = (total if status == "any" else matched) > EXACT_LIMIT
    matched = min(matched, EXACT_LIMIT)
    # Routing runs in Python on payloads: exact on a small match, else the share of a sample that it drops.
    drops = sum(1 for payload in sample if not decide(destination, payload).send)
    left = max(0, min(matched, MAX_EVENTS) - in_flight - (0 if include_delivered else delivered))
    dropped_estimated = matched > len(sample)
    dropped = round(left * drops / len(sample)) if dropped_estimated and sample else drops
    return DryRun(
        destination, matched, more, delivered, in_flight, min(dropped, left), estimated, dropped_estimated,
        include_delivered,
    )  # fmt: skip


# The task -------------------------------------------------------------------------------------------


def run_replay(replay_id: int) -> str:
    """The background task: queue the replay's deliveries chunk by chunk, then leave the rest to the workers."""
    replay = Replay.objects.filter(pk=replay_id).first()
    if replay is None:
        return "gone"
    Replay.objects.filter(pk=replay.pk).update(status=Replay.Status.RUNNING, error="")
    try:
        destinations = list(replay.destinations.defer("credentials").order_by("name"))
        total = 0
        for destination in destinations:
            matched = events_for(replay.criteria, destination).order_by("pk").values("pk")[:MAX_EVENTS].count()
            total += matched
        Replay.objects.filter(pk=replay.pk).update(total=total)
        for destination in destinations:
            _replay_to(replay, destination)
    except Exception as exc:  # shown on the progress page: the marketer can replay again once it is fixed
        log.exception("replay %s failed", replay_id)
        Replay.objects.filter(pk=replay.pk).update(
            status=Replay.Status.FAILED,
            error=f"The replay stopped ({type(exc).__name__}: {exc}). Deliveries queued so far are being sent.",
            finished_at=timezone.now(),
        )
        return "failed"
    Replay.objects.filter(pk=replay.pk).update(status=Replay.Status.SENDING)
    replay.refresh_from_db()
    progress(replay)
    return f"queued {replay.queued}"


def _replay_to(replay: Replay, destination: Destination) -> None:
    events = events_for(replay.criteria, destination).order_by("pk")
    cursor, seen = 0, 0
    while seen < MAX_EVENTS:
        ids = list(events.filter(pk__gt=cursor).values_list("pk", flat=True)[: min(CHUNK, MAX_EVENTS - seen)])
        if not ids:
            return
        with transaction.atomic():
            _replay_chunk(replay, destination, ids)
            transaction.on_commit(lambda: engine.kick(destination.pk, fill=True))
        cursor, seen = ids[-1], seen + len(ids)


def _replay_chunk(replay: Replay, destination: Destination, event_ids: list[int]) -> None:
    """Queue one chunk of events for one destination and add to the replay's counts."""
    now = timezone.now()
    rows: dict[int, list[tuple[int, str]]] = {}
    existing = Delivery.objects.filter(destination=destination, event_id__in=event_ids, is_test=False)
    for delivery_id, event_id, status in existing.order_by("pk").values_list("pk", "event_id", "status"):
        rows.setdefault(event_id, []).append((delivery_id, status))
    requeue: list[int] = []
    create: list[int] = []
    skipped_delivered = 0
    for event_id in event_ids:
        statuses = [status for _, status in rows.get(event_id, [])]
        waiting = [i for i, status in rows.get(event_id, []) if status in Delivery.REQUEUEABLE]
        if Delivery.Status.IN_FLIGHT in statuses:
            continue  # being sent right now: counted as processed only
        if Delivery.Status.DELIVERED in statuses and not replay.include_delivered:
            skipped_delivered += 1
        elif waiting:
            requeue.append(waiting[-1])  # the newest row keeps the event's attempt history
        else:
            create.append(event_id)
    # The destination's filter applies on replay, as Segment applies it: dropped pairs are counted, not queued.
    deciding = {delivery_id: event_id for event_id, rows_ in rows.items() for delivery_id, _ in rows_}
    wanted = set(create) | {deciding[i] for i in requeue}
    payloads = dict(Event.objects.filter(pk__in=wanted).values_list("pk", "payload"))
    dropped = {event_id for event_id, payload in payloads.items() if not decide(destination, payload).send}
    requeue = [i for i in requeue if deciding[i] not in dropped]
    create = [event_id for event_id in create if event_id not in dropped]
    queued = 0
    if requeue:
        # A worker may have claimed one since: only rows still waiting to be queued again.
        again = Delivery.objects.filter(pk__in=requeue, status__in=Delivery.REQUEUEABLE)
        fields = {
            "status": Case(
                When(attempts=0, then=Value(Delivery.Status.PENDING)), default=Value(Delivery.Status.RETRYING)
            ),
            "next_attempt_at": now,
            "retry_from": now,
            "replay": replay,
            "lease_expires_at": None,
        }
        # A filtered row's reason no longer holds once the filter lets it through.
        queued += again.filter(status=Delivery.Status.FILTERED).update(
            **fields, error_code="", error_message="", hint=""
        )
        queued += again.exclude(status=Delivery.Status.FILTERED).update(**fields)
    if create:
        Delivery.objects.bulk_create(
            Delivery(
                event_id=event_id,
                destination=destination,
                status=Delivery.Status.PENDING,
                next_attempt_at=now,
                retry_from=now,
                replay=replay,
                created_at=now,
            )
            for event_id in create
        )
        queued += len(create)
    Replay.objects.filter(pk=replay.pk).update(
        processed=F("processed") + len(event_ids),
        queued=F("queued") + queued,
        skipped_delivered=F("skipped_delivered") + skipped_delivered,
        skipped_filtered=F("skipped_filtered") + len(dropped),
    )


def progress(replay: Replay) -> dict[str, Any]:
    """Where the replay stands; once nothing it queued waits any more, its final counts are stored."""
    by_status: dict[str, int] = {}
    if replay.status in (Replay.Status.SENDING, Replay.Status.FAILED) or (
        replay.status == Replay.Status.RUNNING and replay.queued
    ):
        by_status = dict(
            Delivery.objects.filter(replay=replay).order_by().values_list("status").annotate(n=Count("pk"))
        )
    if replay.status == Replay.Status.DONE:
        delivered, failed, filtered, waiting = replay.delivered, replay.failed, 0, 0
    else:
        delivered, failed = by_status.get("delivered", 0), by_status.get("failed", 0)
        filtered = by_status.get("filtered", 0)
        waiting = sum(by_status.get(status, 0) for status in Delivery.WAITING)
        if replay.status == Replay.Status.SENDING and not waiting:
            now = timezone.now()
            Replay.objects.filter(pk=replay.pk, status=Replay.Status.SENDING).update(
                status=Replay.Status.DONE, delivered=delivered, failed=failed, finished_at=now
            )
            replay.status, replay.delivered, replay.failed, replay.finished_at = "done", delivered, failed, now
    skipped_in_flight = replay.processed - replay.queued - replay.skipped_delivered - replay.skipped_filtered
    if replay.status == Replay.Status.RUNNING:
        percent = 100 * replay.processed / replay.total if replay.total else 0
        phase = f"Queuing deliveries: {replay.processed:,} of {replay.total:,} looked at."
    elif replay.status == Replay.Status.QUEUED:
        percent, phase = 0, "Waiting for a worker to start the replay."
    else:
        finished = replay.queued - waiting
        percent = 100 * finished / replay.queued if replay.queued else 100
        phase = f"Sent {finished:,} of {replay.queued:,} queued deliveries."
        if replay.status == Replay.Status.DONE:
            phase = "Done: " + phase[0].lower() + phase[1:]
    paused = [
        d.name
        for d in replay.destinations.only("name", "paused", "enabled").order_by("name")
        if (d.paused or not d.enabled) and replay.status != Replay.Status.DONE
    ]
    return {
        "status": replay.status,
        "status_label": replay.get_status_display().capitalize(),
        "done": replay.status in (Replay.Status.DONE, Replay.Status.FAILED) and not waiting,
        "percent": round(min(percent, 100), 1),
        "phase": phase,
        "total": replay.total,
        "processed": replay.processed,
        "queued": replay.queued,
        "skipped_delivered": replay.skipped_delivered,
        "skipped_filtered": replay.skipped_filtered,
        "skipped_in_flight": max(skipped_in_flight, 0),
        "delivered": delivered,
        "failed": failed,
        "filtered": filtered,
        "waiting": waiting,
        "error": replay.error,
        "paused": paused,
        "finished_at": moment(replay.finished_at) if replay.finished_at else "",
    }


# The form -------------------------------------------------------------------------------------------


class DestinationChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, destination: Destination) -> str:
        notes = [destination.vendor_class.label]
        if destination.paused:
            notes.append("paused")
        return f"{destination.name} ({', '.join(notes)})"


class ReplayForm(forms.Form):
    events = forms.CharField(required=False, widget=forms.HiddenInput)
    source = forms.ModelChoiceField(Source.objects.order_by("name"), required=False, empty_label="All sources")
    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    type = forms.ChoiceField(
        required=False, choices=[("", "All types")] + [c for c in Event.Type.choices if c[0] != "invalid"]
    )
    event = forms.CharField(required=False, max_length=255, help_text="A track event's exact name.")
    delivery_status = forms.ChoiceField(
        required=False,
        choices=DELIVERY_STATUSES,
        initial="any",
        label="Delivery status",
        help_text="Its delivery to each chosen destination.",
    )
    destinations = DestinationChoices(
        Destination.objects.filter(enabled=True).defer("credentials").order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one destination."},
    )
    include_delivered = forms.BooleanField(required=False, label="Also send events already delivered")
    confirm_journey = forms.BooleanField(
        required=False, label="I understand: replaying re-enters these contacts into the journey"
    )

    def clean_events(self) -> list[int] | None:
        text = self.cleaned_data.get("events") or ""
        if not text.strip():
            return None
        try:
            ids = sorted({int(part) for part in text.split(",") if part.strip()})
        except ValueError:
            raise forms.ValidationError("The selection must be event ids separated by commas.") from None
        if len(ids) > MAX_SELECTED:
            raise forms.ValidationError(f"Select at most {MAX_SELECTED:,} events, or replay by a filter.")
        return ids

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "The end of the time range must come after its start.")
        journeys = [d.name for d in data.get("destinations") or [] if d.vendor_class.reenters_contacts]
        if journeys and not data.get("confirm_journey"):
            self.add_error(
                "confirm_journey",
                f"{', '.join(journeys)} is a journey: replaying re-enters these contacts into it. "
                "Tick the box to confirm.",
            )
        return data

    def criteria(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data.get("events"):
            return {"events": data["events"]}
        return {
            "source": data["source"].pk if data.get("source") else None,
            "since": data["since"].isoformat() if data.get("since") else "",
            "until": data["until"].isoformat() if data.get("until") else "",
            "type": data.get("type") or "",
            "event": data.get("event") or "",
            "delivery_status": data.get("delivery_status") or "any",
        }


def initial_from(request: HttpRequest) -> dict[str, Any]:
    """The form's first values: the Debugger's selection or filter, the last 24 hours by default."""
    query = request.GET
    now = timezone.localtime().replace(second=0, microsecond=0)
    initial: dict[str, Any] = {
        "since": now - timedelta(hours=24),
        "until": now + timedelta(minutes=1),
        "delivery_status": query.get("delivery_status") or "any",
        "events": query.get("events", ""),
        "type": query.get("type", ""),
        "event": query.get("event", ""),
    }
    for name in ("since", "until"):
        value = _parse_time(query.get(name, ""))
        if value:
            initial[name] = timezone.localtime(value)
    if query.get("source", "").isdigit():
        initial["source"] = int(query["source"])
    if query.get("destination", "").isdigit():
        initial["destinations"] = [int(query["destination"])]
    return initial


def _parse_time(text: str) -> datetime | None:
    try:
        value = parse_datetime(text.replace(" ", "+"))  # a "+02:00" offset arrives as " 02:00" from a link
    except ValueError:
        return None
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value


# The admin ------------------------------------------------------------------------------------------


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
            **self.admin_site.each_context(request),
            "title": "Replay events",
            "opts": self.opts,
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
            "journey_ids": [d.pk for d in form.fields["destinations"].queryset if d.vendor_class.reenters_contacts],
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
            **self.admin_site.each_context(request),
            "title": f"Replay {replay.pk}",
            "opts": self.opts,
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
    """Record the replay and start its task once the row is committed."""
    with transaction.atomic():
        replay = Replay.objects.create(
            criteria=criteria,
            description=describe(criteria),
            include_delivered=include,
            created_by=request.user if request.user.is_authenticated else None,
        )
        replay.destinations.set(destinations)
        transaction.on_commit(lambda: async_task("deliveries.replay.run_replay", replay.pk, task_name="replay"))
    held = sorted(d.name for d in destinations if d.paused)
    if held:
        messages.warning(
            request, f"Paused: {', '.join(held)}. The replayed deliveries wait there until the destination is resumed."
        )
    return replay
