"""Which destinations an event goes to, and why not when it does not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.mapping import MappingError, evaluate
from integrations.models import Destination


@dataclass(frozen=True)
class Decision:
    send: bool
    code: str = ""
    reason: str = ""


SEND = Decision(True)


def decide(destination: Destination, event: dict[str, Any]) -> Decision:
    """Apply, in order: enabled, the event's integrations object, the filter, consent categories, and what the
    vendor can take (e.g. Marketo: identify and mapped track events only)."""
    if not destination.enabled:
        return Decision(False, "destination_disabled", "The destination is disabled.")
    decision = _integrations(destination, event.get("integrations"))
    if decision.send:
        decision = _filter(destination.filter or {}, event)
    if decision.send:
        decision = _consent(destination.consent_categories or [], event)
    if decision.send:
        reason = destination.vendor_class.skip_reason(destination.config or {}, event)
        if reason:
            decision = Decision(False, "not_for_vendor", reason)
    return decision


def _integrations(destination: Destination, integrations: Any) -> Decision:
    """Segment's integrations object: {"All": false, "<name>": true}; names are case-sensitive."""
    if not isinstance(integrations, dict) or not integrations:
        return SEND
    for name in (destination.name, destination.vendor_class.label):
        if name in integrations:
            if integrations[name] is False:
                return Decision(False, "integrations_object", f'The event\'s integrations object sets "{name}": false.')
            return SEND
    if integrations.get("All", True) is False:
        return Decision(
            False,
            "integrations_object",
            f'The event\'s integrations object sets "All": false and does not name "{destination.name}".',
        )
    return SEND


def _filter(spec: dict[str, Any], event: dict[str, Any]) -> Decision:
    types = spec.get("types") or []
    if types and event.get("type") not in types:
        allowed = ", ".join(types)
        return Decision(False, "filter_type", f"The filter lets through {allowed} only, not {event.get('type')}.")
    names = spec.get("events") or []
    if names and event.get("type") == "track" and event.get("event") not in names:
        return Decision(False, "filter_event", f"The filter does not list the event {event.get('event')!r}.")
    condition = spec.get("condition")
    if condition:
        try:
            passed = evaluate(condition, event)
        except MappingError as exc:
            return Decision(False, "filter_condition", f"The filter condition cannot be evaluated: {exc}")
        except Exception as exc:  # a JMESPath runtime error (e.g. a function on the wrong type)
            return Decision(False, "filter_condition", f"The filter condition failed on this event: {exc}")
        if not passed:
            return Decision(False, "filter_condition", f"The filter condition {condition!r} is false for this event.")
    return SEND


def _consent(categories: list[str], event: dict[str, Any]) -> Decision:
    """Send only when every category the destination needs is granted in context.consent.categoryPreferences.

    Events without a consent object are sent, as Segment does.
    """
    if not categories:
        return SEND
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    preferences = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if not isinstance(preferences, dict):
        return SEND
    refused = [c for c in categories if preferences.get(c) is not True]
    if refused:
        return Decision(False, "consent", f"The user has not consented to {', '.join(refused)}.")
    return SEND
