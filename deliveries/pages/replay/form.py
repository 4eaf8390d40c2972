"""The replay form: events by a Debugger selection or a filter, the destinations, and whether to send what was
delivered already, and the marketer's confirmation where sending again has a consequence (a journey's emails)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from deliveries.models import Event
from deliveries.pages.replay.selection import DELIVERY_STATUSES
from integrations.models import Destination, Source
from integrations.spec import EVENT_TYPES

MAX_SELECTED = 1_000  # ids in ?events= (a Debugger selection is a page or a few)


class DestinationChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, destination: Destination) -> str:
        notes = [destination.vendor_class.label]
        if destination.paused:
            notes.append("paused")
        return f"{destination.name} ({', '.join(notes)})"


class ReplayForm(forms.Form):
    # What the marketer does to confirm a replay with a consequence (the management API asks in its own words).
    CONFIRM = "Tick the box to confirm."

    events = forms.CharField(required=False, widget=forms.HiddenInput)
    source = forms.ModelChoiceField(Source.objects.order_by("name"), required=False, empty_label="All sources")
    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    type = forms.ChoiceField(
        required=False, choices=[("", "All types")] + [(t, Event.Type(t).label) for t in EVENT_TYPES]
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
    confirm_resend = forms.BooleanField(required=False, label="I understand what sending these events again does")

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
        warned = [d for d in data.get("destinations") or [] if d.vendor_class.replay_warning]
        if warned and not data.get("confirm_resend"):
            for destination in warned:
                self.add_error("confirm_resend", f"{destination.name}: {destination.vendor_class.replay_warning}.")
            self.add_error("confirm_resend", self.CONFIRM)
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
