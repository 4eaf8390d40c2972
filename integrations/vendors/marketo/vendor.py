"""The Marketo vendor: identify events upsert leads, mapped track events become custom activities, a batch of up
to 300 events in at most three calls (a lookup, an upsert, the activities), each event with its own result."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from integrations.mapping import evaluate
from integrations.vendors.contract import DeliveryError, Result
from integrations.vendors.http import HttpClient
from integrations.vendors.marketo.config import MarketoConfig, MarketoCredentials
from integrations.vendors.marketo.errors import HINTS, skipped
from integrations.vendors.marketo.rest import MarketoRest
from integrations.vendors.oauth import token_key
from integrations.vendors.state import LockBusy

MAX_URL = 8000  # Marketo refuses URIs over 8 KB: a longer lookup goes as POST ?_method=GET (§2.2)
LEAD_ID_TTL = 3600.0  # how long a lead id learnt from Marketo is used without asking again
UPSERT_OFF = "upsert_leads is off, so identify events are not sent to Marketo"
NOT_FOR_MARKETO = (
    "Marketo takes identify events (with upsert_leads on) and track events mapped under config.activities: change "
    "the config, or filter this destination to those events."
)
LeadKey = tuple[str, str, str]  # instance, lookup field, lookup value (emails lower-cased: Marketo ignores case)


def attribute_text(value: Any) -> str:
    """Marketo takes attribute values as strings: strings as they are, anything else as JSON (true, 49.5)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def activity_date(event: dict[str, Any]) -> str:
    for name in ("timestamp", "receivedAt"):
        try:
            moment = datetime.fromisoformat(event[name])
        except (KeyError, TypeError, ValueError):
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Batch:
    """One deliver(): each event's outcome (None: delivered) and the exchanges of the calls it took part in."""

    http: HttpClient
    size: int
    outcome: dict[int, DeliveryError | None] = field(default_factory=dict)
    exchanges: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def open(self, indices: Iterable[int]) -> list[int]:
        return [i for i in indices if i not in self.outcome]

    def settle(self, indices: Iterable[int], outcome: DeliveryError | None) -> None:
        for i in indices:
            self.outcome.setdefault(i, outcome)

    @contextmanager
    def call(self, indices: list[int]) -> Iterator[None]:
        """Make one call for these events. Its error settles them; a passing one (throttled, retryable) settles
        every open event too, since the next calls of the batch would only meet it again."""
        start, touched = len(self.http.exchanges), indices
        try:
            yield
        except DeliveryError as error:
            if error.throttled or error.retryable:
                touched = sorted({*indices, *self.open(range(self.size))})
            self.settle(touched, error)
        finally:
            for i in touched:
                self.exchanges.setdefault(i, []).extend(self.http.exchanges[start:])

    def results(self) -> list[Result]:
        done = [(self.outcome[i], self.exchanges.get(i, [])) for i in range(self.size)]
        return [Result("delivered", status_code=200, exchanges=ex) if o is None else o.result(ex) for o, ex in done]


class Marketo(MarketoRest):
    key = "marketo"
    label = "Marketo"
    config_class = MarketoConfig
    credentials_class = MarketoCredentials
    default_mapping = {
        "email": "traits.email || context.traits.email || properties.email",
        "firstName": "traits.firstName || traits.first_name || context.traits.firstName",
        "lastName": "traits.lastName || traits.last_name || context.traits.lastName",
        "phone": "traits.phone || context.traits.phone",
        "title": "traits.title || context.traits.title",
        "company": "traits.company.name || context.traits.company.name",
    }
    max_batch = 300  # records per lead or activity call (§2.7)
    calls_per_batch = 3  # a lead lookup, an upsert, the activities
    default_rate_limit = (45, 20.0)  # Marketo asks each integration to stay under 50 of the instance's 100 per 20 s
    rate_ceiling = (100, 20.0)  # the instance's documented limit (606 beyond it), shared by every integration
    default_concurrency = 5  # of the instance's 10 calls in flight, as Marketo recommends
    setup_errors = MarketoRest.setup_errors | {
        "invalid_credentials",
        "marketo_603",
        "marketo_610",
        "activity_type_not_found",
    }

    @classmethod
    def skip_reason(cls, config: dict[str, Any], event: dict[str, Any]) -> str:
        config = config if isinstance(config, dict) else {}
        kind, name, activities = event.get("type"), event.get("event"), config.get("activities")
        if kind == "identify":
            return "" if config.get("upsert_leads") is True else UPSERT_OFF
        if kind != "track":
            return f"Marketo takes identify and track events only, not {kind} events"
        if isinstance(activities, dict) and isinstance(name, str) and name in activities:
            return ""
        return f"no Marketo custom activity is mapped for '{name}': add it under config.activities"

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        self.calls = 0
        batch, config, settings = Batch(self.http, len(events)), self.config, dataclasses.asdict(self.config)
        leads: dict[int, dict[str, Any]] = {}
        keys: dict[int, LeadKey] = {}
        for i, event in enumerate(events):
            try:
                lead = self.lead(event, settings)
            except DeliveryError as error:
                batch.settle([i], error)
            else:
                leads[i], keys[i] = lead, self._key(lead[config.lookup_field])
        track = [i for i in leads if events[i]["type"] == "track"]
        ids = {keys[i]: self.state.memo.get(keys[i]) for i in track}
        cached = {key for key, lead_id in ids.items() if lead_id is not None}
        wanted = {keys[i]: str(leads[i][config.lookup_field]) for i in track if keys[i] not in cached}
        if wanted:
            with batch.call([i for i in track if keys[i] in wanted]):
                ids |= self._look_up(wanted)
        self._upsert_leads(batch, events, leads, keys, ids)
        self._add_activities(batch, events, keys, ids, cached)
        results = batch.results()
        for result in results:
            result.error_message = self.http.redact_text(result.error_message)  # Marketo may echo a credential
        self.http.take_exchanges()
        return results

    def lead(self, event: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        """The event's lead fields (nulls left out); DeliveryError when Marketo takes no such event or the lookup
        field has no value."""
        reason = self.skip_reason(settings, event)
        if reason:
            raise DeliveryError(reason, code="not_for_vendor")
        mapped = self.map_event(event)
        lead = {k: v for k, v in mapped.items() if v is not None} if isinstance(mapped, dict) else {}
        if lead.get(self.config.lookup_field) in (None, ""):
            error = f"The event has no value for the lookup field {self.config.lookup_field!r}."
            raise DeliveryError(error, code="missing_lookup_value", hint=HINTS["1002"])
        return lead

    def activity(self, event: dict[str, Any], lead_id: Any) -> dict[str, Any]:
        """The custom activity record of a mapped track event; DeliveryError when its primary attribute is empty."""
        spec = self.config.activities[event["event"]]
        primary = evaluate(spec["primary_attribute"], event)
        if primary is None:
            error = f"The event has no value for {spec['primary_attribute']!r}, the activity's primary attribute."
            raise DeliveryError(error, code="missing_primary_attribute", hint=HINTS["primary"])
        values = {name: evaluate(expression, event) for name, expression in spec.get("attributes", {}).items()}
        return {
            "leadId": lead_id,
            "activityDate": activity_date(event),
            "activityTypeId": spec["activity_type_id"],
            "primaryAttributeValue": attribute_text(primary),
            "attributes": [{"apiName": k, "value": attribute_text(v)} for k, v in values.items() if v is not None],
        }

    def upsert_body(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"action": "createOrUpdate", "lookupField": self.config.lookup_field, "input": records}

    def lookup_query(self, values: Iterable[str]) -> dict[str, str]:
        lookup_field = self.config.lookup_field
        return {"filterType": lookup_field, "filterValues": ",".join(values), "fields": f"id,{lookup_field}"}

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            lead = self.lead(event, dataclasses.asdict(self.config))
        except DeliveryError as error:
            error.hint = error.hint or NOT_FOR_MARKETO
            raise
        rest = f"{self.config.base}/rest/v1/"
        headers = self.masked_headers({"Authorization": "Bearer (access token)", "Content-Type": "application/json"})
        token = f"After an OAuth token call to {self.config.base}/identity/oauth/token (reused until it expires)."
        upsert = {"method": "POST", "url": rest + "leads.json", "headers": headers, "body": self.upsert_body([lead])}
        if event.get("type") == "identify":
            return [{**upsert, "note": token + " Upserts the lead by " + self.config.lookup_field + "."}]
        record = self.activity(event, "(the lead's id)")
        query = urlencode(self.lookup_query([str(lead[self.config.lookup_field])]), safe=",")
        lookup = {
            "method": "GET",
            "url": f"{rest}leads.json?{query}",
            "headers": {k: v for k, v in headers.items() if k != "Content-Type"},
            "body": None,
            "note": token + " Marketo looks the lead up first (skipped when cdphub remembers its id).",
        }
        missing = "Only when the lookup finds no lead: " + (
            "the lead is created." if self.config.upsert_leads else "with upsert_leads off the event fails instead."
        )
        calls = [lookup, {**upsert, "note": missing}] if self.config.upsert_leads else [lookup]
        activity = {"method": "POST", "url": rest + "activities/external.json", "headers": headers}
        note = f"The custom activity {record['activityTypeId']} for the lead found (or created)."
        if not self.config.upsert_leads:
            note += " " + missing
        return [*calls, {**activity, "body": {"input": [record]}, "note": note}]

    @contextmanager
    def upsert_turn(self) -> Iterator[None]:
        """One upsert per instance at a time, across the hub's workers: two at once of the same lead create a
        duplicate lead (§2.4)."""
        try:
            with self.state.lock(token_key("marketo-upsert", self.config.base.lower()), self.http.timeout + 5):
                yield
        except LockBusy:
            raise DeliveryError(
                "Other workers kept the Marketo lead upsert busy; this batch waits its turn.",
                code="upsert_busy",
                throttled=True,
                retry_after=1.0,
            ) from None

    def _key(self, value: Any) -> LeadKey:
        field_name = self.config.lookup_field
        return self.config.base.lower(), field_name, str(value).lower() if field_name == "email" else str(value)

    def _upsert_leads(
        self,
        batch: Batch,
        events: list[dict[str, Any]],
        leads: dict[int, dict[str, Any]],
        keys: dict[int, LeadKey],
        ids: dict[LeadKey, int | None],
    ) -> None:
        """Upsert identify events and the leads track events did not find (with upsert_leads off, those fail),
        one record per lead, later events winning: Marketo skips a lead given twice in one call (1036)."""
        records: dict[LeadKey, dict[str, Any]] = {}
        members: dict[LeadKey, list[int]] = {}
        for i in batch.open(leads):
            if events[i]["type"] == "identify" or ids.get(keys[i]) is None:
                records[keys[i]] = {**records.get(keys[i], {}), **leads[i]}
                members.setdefault(keys[i], []).append(i)
        if not records:
            return
        if not self.config.upsert_leads:
            for key, group in members.items():
                error = f"No Marketo lead has {key[1]} {leads[group[0]][key[1]]!r}."
                batch.settle(group, DeliveryError(error, code="lead_not_found", hint=HINTS["1004"]))
            return
        with batch.call([i for group in members.values() for i in group]):
            # Two upserts of one lead at once create a duplicate lead (§2.4): one upsert per instance at a time.
            with self.upsert_turn():
                answers = self._post("leads.json", list(records.values()), self.upsert_body)
            for key, answer in zip(members, answers, strict=True):
                if isinstance(answer, dict) and answer.get("status") in ("created", "updated") and "id" in answer:
                    ids[key] = answer["id"]
                    self.state.memo.put(key, answer["id"], LEAD_ID_TTL)
                    batch.settle([i for i in members[key] if events[i]["type"] == "identify"], None)
                else:
                    batch.settle(members[key], answer if isinstance(answer, DeliveryError) else skipped(answer))

    def _add_activities(
        self,
        batch: Batch,
        events: list[dict[str, Any]],
        keys: dict[int, LeadKey],
        ids: dict[LeadKey, int | None],
        cached: set[LeadKey],
    ) -> None:
        records, sent = [], []
        for i in batch.open(keys):
            try:
                records.append(self.activity(events[i], ids[keys[i]]))
            except DeliveryError as error:
                batch.settle([i], error)
                continue
            sent.append(i)
        if not records:
            return
        with batch.call(sent):
            answers = self._post("activities/external.json", records, lambda part: {"input": part})
            for i, answer in zip(sent, answers, strict=True):
                if isinstance(answer, dict) and answer.get("status") == "added":
                    batch.settle([i], None)
                    continue
                error = answer if isinstance(answer, DeliveryError) else skipped(answer)
                if error.code == "lead_not_found" and keys[i] in cached:
                    self.state.memo.forget(keys[i])  # merged or deleted in Marketo since: look it up again on the retry
                    error.retryable = True
                    error.message += " The lead id cdphub remembered is gone; the next try looks the lead up again."
                elif "activity type" in error.message.lower():
                    error.code, error.hint = "activity_type_not_found", HINTS["1013"]
                batch.settle([i], error)

    def _look_up(self, wanted: dict[LeadKey, str]) -> dict[LeadKey, int]:
        """Lead ids for these lookup values in one call (at most 300); values not found are left out."""
        lookup_field = self.config.lookup_field
        query = self.lookup_query(wanted.values())
        encoded = urlencode(query, safe=",")
        if len(f"{self.config.base}/rest/v1/leads.json?{encoded}") <= MAX_URL:
            answer = self._call("GET", f"leads.json?{encoded}")
        else:
            answer = self._call("POST", "leads.json?_method=GET", form=query)
        found: dict[LeadKey, int] = {}
        for lead in answer.get("result") or []:
            if isinstance(lead, dict) and isinstance(lead.get("id"), int) and lead.get(lookup_field) is not None:
                key = self._key(lead[lookup_field])
                if key not in found:  # duplicate leads: the first one Marketo returns
                    found[key] = lead["id"]
                    self.state.memo.put(key, lead["id"], LEAD_ID_TTL)
        return found
