"""Salesforce Marketing Cloud journeys: contacts enter the journeys listening on an API event (§1.4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from integrations.vendors.contract import DeliveryError, Result
from integrations.vendors.sfmc.base import (
    CONTACT_DATA,
    JOURNEY_STOPPED,
    MISSING,
    ORDER_DATA,
    Sfmc,
    SfmcHosts,
    key_value,
    without_nulls,
)


@dataclass(kw_only=True)
class SfmcJourneyConfig(SfmcHosts):
    event_definition_key: str

    def check(self) -> list[str]:
        problems = super().check()
        if not self.event_definition_key.strip():
            problems.append("event_definition_key: required (Journey Builder → entry source → Event Definition Key)")
        elif "." in self.event_definition_key:
            problems.append("event_definition_key: must not contain a period")
        return problems


class SfmcJourney(Sfmc):
    """Enter contacts into the journeys listening on an API event (§1.4): one event sync, several async."""

    key = "sfmc_journey"
    label = "Salesforce Marketing Cloud journey"
    kind = "journey"
    config_class = SfmcJourneyConfig
    replay_warning = "a replay admits these contacts into the journey again, which can send its emails a second time"
    max_batch = 100  # the async route's limit
    calls_per_batch = 2  # the call, and once more after a 401
    mapping_shape = {
        "ContactKey": (True, str, 'the contact key expression, usually "userId"'),
        "Data": (False, dict, "an object of event data field → expression"),
    }
    default_mapping: ClassVar[dict[str, Any]] = {"ContactKey": "userId", "Data": dict(CONTACT_DATA)}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "welcome_on_identify": {
            "label": "Welcome journey on identify",
            "filter": {"types": ["identify"], "events": [], "condition": None},
            "mapping": {"ContactKey": "userId", "Data": dict(CONTACT_DATA)},
        },
        "journey_on_track": {
            "label": "Journey on a track event (Order Completed)",
            "filter": {"types": ["track"], "events": ["Order Completed"], "condition": None},
            "mapping": {"ContactKey": "userId", "Data": {**CONTACT_DATA, **ORDER_DATA}},
        },
    }

    def recognise(self, status: int, errorcode: int | None, message: str, aggregate: bool) -> str:
        text = message.lower()
        about_contact = "contact" in text and "journey" not in text  # "inactive contact" is not a stopped journey
        if status == 400 and ("data field" in text or ("does not exist in" in text and "data extension" in text)):
            return "unknown_data_field"
        if status == 400 and JOURNEY_STOPPED.search(text) and not about_contact:
            return "journey_not_running"
        key = self.config.event_definition_key.lower()
        if (status == 404 and errorcode == 30003) or (
            status == 400 and ("event definition" in text or key in text) and MISSING.search(text)
        ):
            return "unknown_event_definition_key"
        return super().recognise(status, errorcode, message, aggregate)

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        results: dict[int, Result] = {}
        members: list[tuple[int, str, dict[str, Any]]] = []
        for i, event in enumerate(events):
            try:
                members.append((i, *self.member(event)))
            except DeliveryError as error:
                results[i] = error.result([])
        key = self.config.event_definition_key
        if len(members) == 1:
            i, contact, data = members[0]
            results[i] = self.call(self.config.rest + "/interaction/v1/events", self.entry(contact, data))[0]
        elif members:
            body = {"eventDefinitionKey": key, "members": [{"contactKey": c, "data": d} for _, c, d in members]}
            result, data = self.call(self.config.rest + "/interaction/v1/async/events", body)
            answers = data.get("members") if isinstance(data, dict) else None
            for n, (i, _, _) in enumerate(members):
                answer = answers[n] if isinstance(answers, list) and n < len(answers) else None
                results[i] = self.member_result(result, answer)
        return [results[i] for i in range(len(events))]

    def member(self, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The event's contact key and journey data; DeliveryError when it has no contact key."""
        mapped = self.map_event(event)
        mapped = mapped if isinstance(mapped, dict) else {}
        contact = key_value(mapped.get("ContactKey"))
        if contact is None:
            message = "The mapped ContactKey is empty: the event has no contact key (userId) to enter the journey."
            raise self.fail("missing_contact_key", message)
        return contact, without_nulls(mapped.get("Data"))

    def entry(self, contact: str, data: dict[str, Any]) -> dict[str, Any]:
        """The body of one contact's synchronous journey entry (§1.4)."""
        return {"ContactKey": contact, "EventDefinitionKey": self.config.event_definition_key, "Data": data}

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        body = self.entry(*self.member(event))
        return [self.preview_call(self.config.rest + "/interaction/v1/events", body)]

    def member_result(self, batch: Result, answer: Any) -> Result:
        """A member's own outcome from the async answer (members come back in request order, §1.4)."""
        refused = (
            isinstance(answer, dict)
            and "eventInstanceId" not in answer
            and ("errorcode" in answer or "message" in answer)
        )
        if not batch.ok or not refused:
            return dataclasses.replace(batch)
        errorcode = answer.get("errorcode") if isinstance(answer.get("errorcode"), int) else None
        message = self.http.redact_text(str(answer.get("message") or "refused"))
        code = self.recognise(400, errorcode, message, False)
        text = f"Member {answer.get('contactKey')!r}" + (f", errorcode {errorcode}" if errorcode is not None else "")
        return dataclasses.replace(
            batch, outcome="failed", error_code=code, error_message=f"{text}: {message}", hint=self.hint(code)
        )
