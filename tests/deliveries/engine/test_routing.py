"""Routing: each rule that keeps an event from a destination, with the reason the Debugger shows."""

from __future__ import annotations

from typing import Any

import pytest

from deliveries.engine.routing import SEND, Decision, decide
from integrations.models import Destination


def destination(**fields: Any) -> Destination:
    """An unsaved destination: routing reads only its fields."""
    return Destination(**{"name": "Growth hook", "slug": "growth-hook", "vendor": "webhook", **fields})


def event(**fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-42",
        "properties": {"revenue": 49.0, "plan": "pro"},
        "context": {},
        "messageId": "msg-1",
        **fields,
    }


def test_an_event_goes_to_an_enabled_destination_with_no_rules() -> None:
    assert decide(destination(), event()) == Decision(True, "", "")
    assert decide(destination(), event()) is SEND


def test_a_disabled_destination_gets_nothing() -> None:
    assert decide(destination(enabled=False), event()) == Decision(
        False, "destination_disabled", "The destination is disabled."
    )


def test_disabled_wins_over_every_other_rule() -> None:
    decision = decide(destination(enabled=False, filter={"types": ["identify"]}), event(integrations={"All": False}))

    assert decision.code == "destination_disabled"


# The integrations object -----------------------------------------------------------------------------------


@pytest.mark.parametrize("integrations", [None, {}, {"All": True}, "All", ["Growth hook"], {"Other": False}])
def test_an_event_without_a_say_in_the_integrations_object_is_sent(integrations: Any) -> None:
    assert decide(destination(), event(integrations=integrations)).send


def test_all_false_keeps_the_event_from_a_destination_it_does_not_name() -> None:
    assert decide(destination(), event(integrations={"All": False})) == Decision(
        False,
        "integrations_object",
        'The event\'s integrations object sets "All": false and does not name "Growth hook".',
    )


def test_all_false_with_the_destination_name_true_sends() -> None:
    assert decide(destination(), event(integrations={"All": False, "Growth hook": True})).send


def test_the_destination_name_false_keeps_the_event_away() -> None:
    assert decide(destination(), event(integrations={"Growth hook": False})) == Decision(
        False, "integrations_object", 'The event\'s integrations object sets "Growth hook": false.'
    )


def test_the_vendor_label_names_every_destination_of_that_vendor() -> None:
    assert decide(destination(), event(integrations={"Webhook": False})) == Decision(
        False, "integrations_object", 'The event\'s integrations object sets "Webhook": false.'
    )
    assert decide(destination(), event(integrations={"All": False, "Webhook": True})).send
    assert decide(destination(vendor="segment"), event(integrations={"Segment": False})).code == "integrations_object"


def test_the_destination_name_is_more_specific_than_the_vendor_label() -> None:
    assert decide(destination(), event(integrations={"Webhook": False, "Growth hook": True})).send
    assert not decide(destination(), event(integrations={"Webhook": True, "Growth hook": False})).send


@pytest.mark.parametrize("name", ["growth hook", "GROWTH HOOK", "webhook", "Growth Hook", "WebHook"])
def test_names_in_the_integrations_object_are_case_sensitive(name: str) -> None:
    assert not decide(destination(), event(integrations={"All": False, name: True})).send
    assert decide(destination(), event(integrations={name: False})).send


def test_all_is_case_sensitive_too() -> None:
    assert decide(destination(), event(integrations={"all": False})).send


@pytest.mark.parametrize("value", [{}, {"listId": "abc"}, True, "yes"])
def test_any_value_but_false_counts_as_enabled(value: Any) -> None:
    assert decide(destination(), event(integrations={"All": False, "Growth hook": value})).send


# The filter -------------------------------------------------------------------------------------------------


def test_the_filter_lets_through_only_its_types() -> None:
    only_identify = destination(filter={"types": ["identify", "group"]})

    assert decide(only_identify, event()) == Decision(
        False, "filter_type", "The filter lets through identify, group only, not track."
    )
    assert decide(only_identify, event(type="identify")).send


def test_the_filter_lets_through_only_its_track_events() -> None:
    orders = destination(filter={"events": ["Order Completed", "Order Refunded"]})

    assert decide(orders, event()).send
    assert decide(orders, event(event="Product Viewed")) == Decision(
        False, "filter_event", "The filter does not list the event 'Product Viewed'."
    )


def test_event_names_are_matched_exactly() -> None:
    assert not decide(destination(filter={"events": ["Order Completed"]}), event(event="order completed")).send


def test_the_events_list_restricts_only_track_calls() -> None:
    orders = destination(filter={"events": ["Order Completed"]})

    for kind in ("identify", "page", "screen", "group", "alias"):
        assert decide(orders, event(type=kind, event=None)).send, kind


def test_types_and_events_combine() -> None:
    spec = {"types": ["track", "identify"], "events": ["Order Completed"]}

    assert decide(destination(filter=spec), event(type="identify")).send
    assert decide(destination(filter=spec), event(type="page")).code == "filter_type"
    assert decide(destination(filter=spec), event(event="Signed Up")).code == "filter_event"


@pytest.mark.parametrize("spec", [{}, None, {"types": [], "events": [], "condition": None}, {"condition": ""}])
def test_an_empty_filter_lets_everything_through(spec: Any) -> None:
    assert decide(destination(filter=spec), event()).send


def test_a_true_condition_sends() -> None:
    assert decide(destination(filter={"condition": "properties.revenue > `40`"}), event()).send
    assert decide(destination(filter={"condition": "properties.plan == 'pro'"}), event()).send


def test_a_false_condition_keeps_the_event_away_and_quotes_itself() -> None:
    assert decide(destination(filter={"condition": "properties.revenue > `100`"}), event()) == Decision(
        False, "filter_condition", "The filter condition 'properties.revenue > `100`' is false for this event."
    )


@pytest.mark.parametrize("condition", ["properties.missing", "properties.empty", "properties.none", "`false`"])
def test_null_empty_and_false_results_count_as_false(condition: str) -> None:
    assert not decide(destination(filter={"condition": condition}), event(properties={"empty": [], "none": None})).send


def test_an_invalid_condition_keeps_the_event_away_and_says_why() -> None:
    decision = decide(destination(filter={"condition": "properties.["}), event())

    assert not decision.send
    assert decision.code == "filter_condition"
    assert decision.reason.startswith(
        "The filter condition cannot be evaluated: 'properties.[' is not a valid JMESPath expression"
    )


def test_a_condition_that_fails_on_this_event_keeps_it_away_and_says_why() -> None:
    decision = decide(destination(filter={"condition": "length(properties.revenue) > `1`"}), event())

    assert not decision.send
    assert decision.code == "filter_condition"
    assert decision.reason.startswith("The filter condition failed on this event: ")
    assert "length" in decision.reason


def test_the_type_filter_is_checked_before_the_condition() -> None:
    spec = {"types": ["identify"], "condition": "properties.["}

    assert decide(destination(filter=spec), event()).code == "filter_type"


def test_the_integrations_object_is_checked_before_the_filter() -> None:
    decision = decide(destination(filter={"types": ["identify"]}), event(integrations={"Growth hook": False}))

    assert decision.code == "integrations_object"


# Consent ----------------------------------------------------------------------------------------------------


def consented(**preferences: bool) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": preferences}}


def test_an_event_with_every_needed_category_granted_is_sent() -> None:
    ads = destination(consent_categories=["Advertising", "Analytics"])

    assert decide(ads, event(context=consented(Advertising=True, Analytics=True, Functional=False))).send


def test_a_refused_category_keeps_the_event_away() -> None:
    ads = destination(consent_categories=["Advertising", "Analytics"])

    assert decide(ads, event(context=consented(Advertising=False, Analytics=True))) == Decision(
        False, "consent", "The user has not consented to Advertising."
    )


def test_a_category_missing_from_the_preferences_counts_as_refused() -> None:
    ads = destination(consent_categories=["Advertising", "Analytics"])

    assert decide(ads, event(context=consented(Functional=True))) == Decision(
        False, "consent", "The user has not consented to Advertising, Analytics."
    )


def test_only_true_counts_as_granted() -> None:
    ads = destination(consent_categories=["Advertising"])

    for value in ("true", 1, "yes", None):
        assert not decide(ads, event(context={"consent": {"categoryPreferences": {"Advertising": value}}})).send


@pytest.mark.parametrize(
    "context",
    [{}, None, "web", {"consent": None}, {"consent": {}}, {"consent": {"categoryPreferences": "all"}}],
)
def test_an_event_without_a_consent_object_is_sent_as_segment_does(context: Any) -> None:
    assert decide(destination(consent_categories=["Advertising"]), event(context=context)).send


def test_a_destination_that_needs_no_category_ignores_consent() -> None:
    assert decide(destination(), event(context=consented(Advertising=False))).send


def test_the_filter_is_checked_before_consent() -> None:
    both = destination(filter={"types": ["identify"]}, consent_categories=["Advertising"])

    assert decide(both, event(context=consented(Advertising=False))).code == "filter_type"
