"""/api/v1/replays: send stored events again to chosen destinations, as the admin's Replay form does (its form
checks the request, its dry run counts, its task queues), by a selection of event ids or a filter; the list of
replays, and one replay with the progress numbers its admin page polls."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from deliveries.api.openapi import NamedChoiceField
from deliveries.api.pagination import Cursor
from deliveries.api.query import QueryTime, read_query
from deliveries.api.redaction import WithoutWriteKeys
from deliveries.models import Replay
from deliveries.pages.replay import task
from deliveries.pages.replay.dry_run import dry_run
from deliveries.pages.replay.form import MAX_SELECTED, ReplayForm
from deliveries.pages.replay.progress import progress
from deliveries.pages.replay.selection import DELIVERY_STATUSES, MAX_EVENTS, describe
from integrations.models import Destination, Source
from integrations.spec import EVENT_TYPES

DEFAULT_WINDOW = timedelta(hours=24)  # a filter without a time range takes the last 24 hours, as the form starts
# The form's field names that the API calls otherwise.
API_NAMES = {"events": "event_ids", "event": "name", "__all__": "non_field_errors"}


class ApiReplayForm(ReplayForm):
    CONFIRM = 'Send "confirm_resend": true to confirm.'


class ReplayRequestSerializer(serializers.Serializer):
    destinations = serializers.ListField(
        child=serializers.SlugField(), min_length=1, help_text="The slugs of the destinations to send the events to"
    )
    event_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        min_length=1,
        help_text=f"A selection of events (at most {MAX_SELECTED:,}), instead of a filter",
    )
    source = serializers.SlugField(required=False, help_text="Filter: only events from this source")
    since = QueryTime(required=False, help_text="Filter: received from this time on (default: 24 hours ago)")
    until = QueryTime(required=False, help_text="Filter: received before this time (default: now)")
    type = NamedChoiceField(
        [(t, t) for t in EVENT_TYPES], enum="SpecEventType", what="an event type", help_text="Filter: only this type"
    )
    name = serializers.CharField(required=False, max_length=255, help_text="Filter: a track event's exact name")
    delivery_status = NamedChoiceField(
        DELIVERY_STATUSES,
        enum="ReplayDeliveryStatus",
        what="a delivery status",
        help_text="Filter: its delivery to each chosen destination (any, or never for events never sent there)",
    )
    include_delivered = serializers.BooleanField(
        default=False, help_text="Also send events these destinations have received already"
    )
    confirm_resend = serializers.BooleanField(
        default=False,
        help_text="Needed where sending again has a consequence: an SFMC journey admits the contacts again, "
        "Zendesk opens second tickets",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Only count what a replay would send; nothing is made")

    FILTER = ("source", "since", "until", "type", "name", "delivery_status")

    def validate_destinations(self, slugs: list[str]) -> list[Destination]:
        found = {d.slug: d for d in Destination.objects.filter(slug__in=slugs).defer("credentials")}
        unknown = [slug for slug in slugs if slug not in found]
        if unknown:
            quoted = ", ".join(f'"{slug}"' for slug in unknown)
            raise ValidationError(f"No destination has the slug {quoted}.")
        disabled = [slug for slug in slugs if not found[slug].enabled]
        if disabled:
            raise ValidationError(f"Disabled: {', '.join(disabled)}. Enable a destination to replay to it.")
        return [found[slug] for slug in dict.fromkeys(slugs)]

    def validate_source(self, slug: str) -> int:
        found = Source.objects.filter(slug=slug).values_list("pk", flat=True).first()
        if found is None:
            raise ValidationError(f'No source has the slug "{slug}".')
        return found

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("event_ids") and any(name in self.initial_data for name in self.FILTER):
            raise ValidationError("Replay either a selection (event_ids) or a filter, not both.")
        return data


def checked_by_the_form(body: dict[str, Any]) -> ReplayForm:
    """The admin form's own checks (the selection's size, the time range, the confirmation a vendor asks for),
    its errors under the API's names."""
    selection = body.get("event_ids")
    until = body.get("until") or timezone.now()
    since = body.get("since") or until - DEFAULT_WINDOW
    form = ApiReplayForm(
        {
            "events": ",".join(map(str, selection)) if selection else "",
            "source": body.get("source") or "",
            "since": None if selection else since,
            "until": None if selection else until,
            "type": body.get("type", ""),
            "event": body.get("name", ""),
            "delivery_status": body.get("delivery_status") or "any",
            "destinations": [d.pk for d in body["destinations"]],
            "include_delivered": body["include_delivered"],
            "confirm_resend": body["confirm_resend"] or body["dry_run"],  # counting sends nothing
        }
    )
    if not form.is_valid():
        raise ValidationError({API_NAMES.get(name, name): list(errors) for name, errors in form.errors.items()})
    return form


class ReplaySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="replay-detail")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    status = NamedChoiceField(Replay.Status.choices, enum="ReplayStatus", read_only=True)
    destinations = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    criteria = serializers.JSONField(
        read_only=True, help_text='{"events": [ids]}, or the filter: source (id), since, until, type, event, …'
    )

    class Meta:
        model = Replay
        fields = [
            "id",
            "url",
            "created_at",
            "created_by",
            "description",
            "criteria",
            "destinations",
            "include_delivered",
            "status",
            "total",
            "processed",
            "queued",
            "skipped_delivered",
            "skipped_filtered",
            "delivered",
            "failed",
            "error",
            "finished_at",
        ]
        read_only_fields = fields


class ProgressSerializer(serializers.Serializer):
    """Where a replay stands: the numbers of the admin's progress page, polled until `done`."""

    status = serializers.CharField()
    status_label = serializers.CharField()
    done = serializers.BooleanField(help_text="Nothing it queued waits any more")
    percent = serializers.FloatField()
    phase = serializers.CharField(help_text="The numbers in a sentence")
    total = serializers.IntegerField(help_text="(event, destination) pairs that match")
    processed = serializers.IntegerField()
    queued = serializers.IntegerField()
    skipped_delivered = serializers.IntegerField()
    skipped_filtered = serializers.IntegerField()
    skipped_in_flight = serializers.IntegerField()
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    filtered = serializers.IntegerField()
    waiting = serializers.IntegerField(help_text="Queued deliveries not finished yet")
    error = serializers.CharField()
    paused = serializers.ListField(child=serializers.CharField(), help_text="Destinations holding its deliveries")


class ReplayDetailSerializer(ReplaySerializer):
    progress = ProgressSerializer(read_only=True, source="state")

    class Meta(ReplaySerializer.Meta):
        fields = [*ReplaySerializer.Meta.fields, "progress"]
        read_only_fields = fields


def with_progress(replay: Replay) -> Replay:
    """The replay with where it stands (read first: a replay found finished is stored as done there)."""
    state = progress(replay)
    state.pop("finished_at")  # a moment in words, for the page; the replay's own finished_at is the time
    replay.state = state
    return replay


class CountSerializer(serializers.Serializer):
    """What a replay would do for one destination (the admin form's dry run)."""

    destination = serializers.CharField(help_text="The destination's slug")
    matched = serializers.IntegerField(help_text="Events the selection or filter picks for it")
    more = serializers.BooleanField(help_text="More than the dry run counts exactly: matched is that limit")
    delivered = serializers.IntegerField(help_text="Already delivered there")
    in_flight = serializers.IntegerField(help_text="Being sent right now: left alone")
    dropped = serializers.IntegerField(help_text="The destination's filter would drop these")
    skipped = serializers.IntegerField()
    to_send = serializers.IntegerField()
    estimated = serializers.BooleanField(help_text="delivered and in_flight scaled from the oldest events")
    dropped_estimated = serializers.BooleanField(help_text="dropped estimated from a sample")


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    description = serializers.CharField(help_text="The selection or filter in words")
    to_send = serializers.IntegerField()
    max_events = serializers.IntegerField(help_text="A replay sends at most this many events per destination")
    needs_confirmation = serializers.ListField(
        child=serializers.CharField(), help_text='What sending again does where a replay needs "confirm_resend"'
    )
    destinations = CountSerializer(many=True)


def dry_run_answer(form: ReplayForm) -> dict[str, Any]:
    destinations = list(form.cleaned_data["destinations"])
    counts = dry_run(form.criteria(), destinations, form.cleaned_data["include_delivered"])
    return {
        "dry_run": True,
        "description": describe(form.criteria()),
        "to_send": sum(count.to_send for count in counts),
        "max_events": MAX_EVENTS,
        "needs_confirmation": [
            f"{d.name}: {d.vendor_class.replay_warning}." for d in destinations if d.vendor_class.replay_warning
        ],
        "destinations": [
            {
                "destination": count.destination.slug,
                **{name: getattr(count, name) for name in CountSerializer().fields if name != "destination"},
            }
            for count in counts
        ],
    }


class ReplayQuery(serializers.Serializer):
    status = NamedChoiceField(Replay.Status.choices, enum="ReplayStatus", what="a replay status")


REQUEST_EXAMPLES = [
    OpenApiExample(
        "Failed deliveries of the last day, again",
        value={"destinations": ["welcome-hook"], "delivery_status": "failed"},
        request_only=True,
    ),
    OpenApiExample(
        "Count first",
        value={"destinations": ["welcome-journey"], "source": "website", "type": "identify", "dry_run": True},
        request_only=True,
    ),
    OpenApiExample(
        "A selection to a journey",
        value={"destinations": ["welcome-journey"], "event_ids": [4051, 4052], "confirm_resend": True},
        request_only=True,
    ),
]


@extend_schema_view(
    list=extend_schema(summary="List replays", description="Newest first.", parameters=[ReplayQuery]),
    retrieve=extend_schema(
        summary="One replay with its progress",
        description="Poll it until `progress.done`: the numbers of the admin's progress page.",
        responses=ReplayDetailSerializer,
    ),
    create=extend_schema(
        summary="Replay events",
        description=(
            "Send stored events again to chosen destinations: a selection (`event_ids`) or a filter (source, "
            "since/until: the last 24 hours unless given, type, name, delivery status). Already delivered events "
            "are skipped unless `include_delivered`, in-flight ones are left alone, and each destination's filter "
            f"applies. At most {MAX_EVENTS:,} events per destination, the oldest first. `dry_run: true` answers "
            "the counts and makes nothing."
        ),
        request=ReplayRequestSerializer,
        responses={
            201: ReplayDetailSerializer,
            200: OpenApiResponse(DryRunSerializer, description="The dry run's counts (dry_run: true)"),
        },
        examples=REQUEST_EXAMPLES,
    ),
)
@extend_schema(tags=["replays"])
class ReplayViewSet(WithoutWriteKeys, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Replay.objects.all()
    serializer_class = ReplaySerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Replay]:
        destinations = Prefetch("destinations", queryset=Destination.objects.only("id", "slug"))
        replays = Replay.objects.select_related("created_by").prefetch_related(destinations)
        if self.action == "list":
            return replays.filter(**read_query(ReplayQuery, self.request))
        return replays

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return {"create": ReplayRequestSerializer, "retrieve": ReplayDetailSerializer}.get(
            self.action, ReplaySerializer
        )

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self.get_serializer(with_progress(self.get_object())).data)

    def create(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        form = checked_by_the_form(body.validated_data)
        if body.validated_data["dry_run"]:
            return Response(dry_run_answer(form))
        replay = task.start(
            form.criteria(),
            list(form.cleaned_data["destinations"]),
            form.cleaned_data["include_delivered"],
            request.user,
        )
        replay = with_progress(self.get_queryset().get(pk=replay.pk))
        answer = ReplayDetailSerializer(replay, context=self.get_serializer_context()).data
        location = reverse("replay-detail", args=[replay.pk], request=request)
        return Response(answer, status=status.HTTP_201_CREATED, headers={"Location": location})
