"""Marketo Engage: identify events upsert leads, mapped track events become custom activities (REST API).

Wire contract: vendor-contracts.md §2. Marketo answers most errors with HTTP 200, `success: false` and a code:
https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit
from zoneinfo import ZoneInfo

import orjson
import requests
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.mapping import MappingError, compile_expression, evaluate
from integrations.models import VendorLock
from integrations.vendors.base import DeliveryError, HttpClient, Result, Vendor, describe_response
from integrations.vendors.oauth import SharedToken, token_key

MUNCHKIN_ID = re.compile(r"[0-9]{3}-[A-Za-z]{3}-[0-9]{3}")
API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# A name that does not exist (a typo in the Munchkin ID), not a resolver outage ("Temporary failure", EAI_AGAIN).
NO_HOST = re.compile(r"name or service not known|nodename nor servname|no address associated", re.I)
ACTIVITY_KEYS = ("activity_type_id", "primary_attribute", "attributes")
MAX_ATTRIBUTES = 20  # per custom activity type (§2.5)
MAX_URL = 8000  # Marketo refuses URIs over 8 KB: a longer lookup goes as POST ?_method=GET (§2.2)
QUOTA_ZONE = ZoneInfo("America/Chicago")  # the daily quota resets at midnight US Central (§2.7)
TOKEN_ROLLOVER_WAIT = 1.0  # expires_in 0: the token is rolling over, ask again after this long (§2.1)
LEAD_ID_TTL = 3600.0
LOCK_POLL = 0.05
TOKEN_CODES = {"601", "602"}
TRANSIENT_CODES = {"500", "502", "604", "608", "611", "614", "713", "719"}
ERROR_CODES = {
    "606": "rate_limited",
    "615": "concurrency_limited",
    "607": "daily_quota",
    "1004": "lead_not_found",
    "1006": "field_not_found",
    "1013": "activity_type_not_found",
}

UPSERT_OFF = "upsert_leads is off, so identify events are not sent to Marketo"
WRONG_HOST = "Check the Munchkin ID or base URL against Admin → Web Services → REST API Endpoint."
NOT_FOR_MARKETO = (
    "Marketo takes identify events (with upsert_leads on) and track events mapped under config.activities: change "
    "the config, or filter this destination to those events."
)
CDPHUB_FAULT = "Marketo refused cdphub's request itself, not your settings: report it with this attempt's exchanges."
TRANSIENT = "Marketo had a passing problem; the delivery is retried and nothing needs changing unless it lasts."
HINTS = {
    "invalid_credentials": "Copy the client id and secret again from Admin → LaunchPoint → (the API service) → View "
    "Details.",
    **dict.fromkeys(("600", "605", "609", "612", "613"), CDPHUB_FAULT),
    **dict.fromkeys(TRANSIENT_CODES | TOKEN_CODES, TRANSIENT),
    "603": "Give the API user's role the Read-Write Lead and Activity permissions (Admin → Users & Roles) and check "
    "the IP restrictions in Admin → Web Services.",
    "606": "Marketo's 100 calls per 20 s are shared by every integration of the instance: lower this destination's "
    "rate limit.",
    "607": "The instance's daily API quota is used up: deliveries resume after midnight US Central; ask Marketo to "
    "raise the quota if this repeats.",
    "610": WRONG_HOST,
    "614": "Marketo says the subscription is unavailable: if this lasts, ask Marketo support about the instance.",
    "615": "Marketo's 10 calls in flight are shared by every integration of the instance: lower this destination's "
    "concurrency.",
    "616": "This Marketo subscription type has no REST API access: ask Marketo support.",
    "701": "A value Marketo requires is blank: check lookup_field and the activity's primary_attribute.",
    "703": "Custom activities are not enabled for this Marketo subscription: ask Marketo support.",
    "1001": "A mapped value does not fit its Marketo field's type: compare the mapping with Admin → Field Management.",
    "1002": "The lookup field value is missing in the event: map it in the destination's mapping.",
    "1003": "Marketo refused the data as invalid: compare the mapping and config.activities with its message.",
    "1004": "The lead is not in Marketo: turn on upsert_leads, or send an identify event for it first.",
    "1006": "Check the API name in Admin → Field Management and fix the mapping or the activity's attributes.",
    "1007": "Several Marketo leads share this lookup value: merge them in Marketo or choose a unique lookup_field.",
    "1008": "The API user cannot reach the lead's partition: give its role access in Admin → Workspaces & Partitions.",
    "1011": "Marketo cannot look leads up by this field: choose a searchable lookup_field such as email.",
    "1013": "Approve the activity type in Admin → Marketo Custom Activities and check its activity_type_id.",
    "1049": "The activity's attributes are over 64 KB: map fewer or shorter attributes.",
    "primary": "Fix the activity's primary_attribute under config.activities so that it finds a value in the event.",
    "payload_too_large": "One record is over Marketo's 1 MB limit: map fewer or shorter values.",
}


def seconds_to_quota_reset(now: datetime | None = None) -> float:
    """Seconds until the next midnight in Chicago, measured in UTC so a DST change that day counts."""
    local = (now or datetime.now(UTC)).astimezone(QUOTA_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=QUOTA_ZONE)
    return (midnight.astimezone(UTC) - local.astimezone(UTC)).total_seconds()


WINDOW = re.compile(r"with\s*in\s*'(\d+(?:\.\d+)?)'\s*sec", re.I)


def marketo_error(code: str, message: str) -> DeliveryError:
    """What a Marketo error code (response or record level) means for the delivery (§2.6)."""
    throttled = code in ("606", "607", "615")
    error = DeliveryError(
        f"Marketo error {code}: {message}",
        code=ERROR_CODES.get(code, f"marketo_{code}"),
        hint=HINTS.get(code, ""),
        status_code=200,
        retryable=code in TRANSIENT_CODES | TOKEN_CODES,
        throttled=throttled,
        defer=code == "607",  # waits past the retry deadline for the reset: the events are not lost
    )
    if throttled:  # 606: the rate window; 615: a short backoff with jitter; 607: the daily reset
        error.retry_after = (
            rate_window(message)
            if code == "606"
            else random.uniform(2, 5)
            if code == "615"
            else seconds_to_quota_reset()
        )
    return error


def rate_window(message: str) -> float:
    """The window a 606 names ("Max rate limit '100' exceeded with in '20' secs"): wait that long, 20 s if unsaid."""
    match = WINDOW.search(message)
    return min(float(match.group(1)), 60.0) if match else 20.0


def first_problem(problems: Any) -> tuple[str, str]:
    """The code and message of the first entry of a Marketo `errors` or `reasons` list."""
    first = problems[0] if isinstance(problems, list) and problems and isinstance(problems[0], dict) else {}
    return str(first.get("code") or "unknown"), str(first.get("message") or "no reason given")


@contextmanager
def vendor_lock(key: str, seconds: float) -> Iterator[None]:
    """Hold the VendorLock row `key` across processes; a holder that died frees it after `seconds`."""
    lease, give_up = uuid.uuid4().hex, time.monotonic() + 2 * seconds
    while True:
        now = timezone.now()
        until = now + timedelta(seconds=seconds)
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        if VendorLock.objects.filter(free, key=key).update(lease=lease, lease_until=until):
            break
        if not VendorLock.objects.filter(key=key).exists():
            try:
                with transaction.atomic():
                    VendorLock.objects.create(key=key, lease=lease, lease_until=until)
                break
            except IntegrityError:
                pass  # another worker made the row first and holds it
        if time.monotonic() > give_up:
            raise DeliveryError(
                "Other workers kept the Marketo lead upsert busy; this batch waits its turn.",
                code="upsert_busy",
                throttled=True,
                retry_after=1.0,
            )
        time.sleep(LOCK_POLL)
    try:
        yield
    finally:
        VendorLock.objects.filter(key=key, lease=lease).update(lease="", lease_until=None)


LeadKey = tuple[str, str, str]  # instance, lookup field, lookup value (emails lower-cased: Marketo ignores case)


class LeadIds:
    """Lead ids by (instance, lookup field, value), per process: a track event then needs no lookup call."""

    def __init__(self) -> None:
        self.ids: dict[LeadKey, tuple[int, float]] = {}

    def get(self, key: LeadKey) -> int | None:
        found = self.ids.get(key)
        return found[0] if found and found[1] > time.monotonic() else None

    def put(self, key: LeadKey, lead_id: int) -> None:
        if len(self.ids) >= 100_000:
            self.ids.clear()
        self.ids[key] = (lead_id, time.monotonic() + LEAD_ID_TTL)

    def forget(self, key: LeadKey) -> None:
        self.ids.pop(key, None)


LEAD_IDS = LeadIds()


@dataclass
class MarketoConfig:
    munchkin_id: str = ""
    base_url: str = ""  # instead of munchkin_id: the sandbox, tests, a proxy
    lookup_field: str = "email"
    upsert_leads: bool = False
    activities: dict[str, dict] = field(default_factory=dict)  # event name → activity_type_id, attributes

    @property
    def base(self) -> str:
        return self.base_url.rstrip("/") if self.base_url else f"https://{self.munchkin_id}.mktorest.com"

    def check(self) -> list[str]:
        problems = []
        if bool(self.munchkin_id) == bool(self.base_url):
            problems.append("munchkin_id: give the Munchkin ID (like 284-RPR-133) or base_url, one of the two")
        elif self.munchkin_id and not MUNCHKIN_ID.fullmatch(self.munchkin_id):
            problems.append("munchkin_id: must look like 284-RPR-133 (Admin → Munchkin → Munchkin Account ID)")
        parts = urlsplit(self.base_url)
        if self.base_url and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query):
            problems.append("base_url: must be an http(s) URL like https://284-RPR-133.mktorest.com")
        elif parts.path.rstrip("/").endswith(("/rest", "/identity")):
            problems.append("base_url: leave out /rest or /identity: https://284-RPR-133.mktorest.com")
        if not API_NAME.fullmatch(self.lookup_field):
            problems.append("lookup_field: must be a lead field's API name, such as email")
        elif self.lookup_field == "id" and self.upsert_leads:
            problems.append("lookup_field: Marketo cannot upsert leads by id: use email or another unique field")
        for name, spec in self.activities.items():
            problems += [f"activities.{name}.{p}" for p in _activity_problems(spec)]
        return problems


def _activity_problems(spec: dict[str, Any]) -> list[str]:
    """Problems of one activities entry, each starting with its key."""
    problems = [f"{key}: unknown setting (use {', '.join(ACTIVITY_KEYS)})" for key in spec if key not in ACTIVITY_KEYS]
    type_id = spec.get("activity_type_id")
    if not isinstance(type_id, int) or isinstance(type_id, bool) or type_id < 100000:
        problems.append("activity_type_id: must be a whole number ≥ 100000 (Admin → Marketo Custom Activities)")
    primary = spec.get("primary_attribute")
    if not isinstance(primary, str) or not primary:
        problems.append("primary_attribute: required, a JMESPath expression over the event such as properties.plan")
    else:
        problems += _expression("primary_attribute", primary)
    attributes = spec.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        return [*problems, 'attributes: must be an object of API name → JMESPath, like {"amount": "properties.total"}']
    if len(attributes) > MAX_ATTRIBUTES:
        problems.append(f"attributes: Marketo allows at most {MAX_ATTRIBUTES} attributes per custom activity")
    return problems + [p for name, value in attributes.items() for p in _expression(f"attributes.{name}", value)]


def _expression(where: str, expression: str) -> list[str]:
    try:
        compile_expression(expression)
    except MappingError as exc:
        return [f"{where}: {exc}"]
    return []


@dataclass
class MarketoCredentials:
    client_id: str
    client_secret: str


def _text(value: Any) -> str:
    """Marketo takes attribute values as strings: strings as they are, anything else as JSON (true, 49.5)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _activity_date(event: dict[str, Any]) -> str:
    for name in ("timestamp", "receivedAt"):
        try:
            moment = datetime.fromisoformat(event[name])
        except (KeyError, TypeError, ValueError):
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TooLarge(DeliveryError):
    """HTTP 413: the body is over Marketo's 1 MB; the caller splits the records."""


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


class Marketo(Vendor):
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
    default_concurrency = 5  # of the instance's 10 calls in flight, as Marketo recommends
    setup_errors = Vendor.setup_errors | {
        "invalid_credentials",
        "marketo_603",
        "marketo_610",
        "activity_type_not_found",
    }

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, credentials, *args, **kwargs)
        key = token_key("marketo", self.config.base, self.credentials.client_id, self.credentials.client_secret)
        self.token = SharedToken(key, self.destination_id, self._fetch_token, self.http.timeout)
        self.calls = 0  # REST calls of the current deliver(): the engine counted the first one

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
        ids = {keys[i]: LEAD_IDS.get(keys[i]) for i in track}
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
            "activityDate": _activity_date(event),
            "activityTypeId": spec["activity_type_id"],
            "primaryAttributeValue": _text(primary),
            "attributes": [{"apiName": k, "value": _text(v)} for k, v in values.items() if v is not None],
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
            with vendor_lock(token_key("marketo-upsert", self.config.base.lower()), self.http.timeout + 5):
                answers = self._post("leads.json", list(records.values()), self.upsert_body)
            for key, answer in zip(members, answers, strict=True):
                if isinstance(answer, dict) and answer.get("status") in ("created", "updated") and "id" in answer:
                    ids[key] = answer["id"]
                    LEAD_IDS.put(key, answer["id"])
                    batch.settle([i for i in members[key] if events[i]["type"] == "identify"], None)
                else:
                    batch.settle(members[key], answer if isinstance(answer, DeliveryError) else _skipped(answer))

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
                error = answer if isinstance(answer, DeliveryError) else _skipped(answer)
                if error.code == "lead_not_found" and keys[i] in cached:
                    LEAD_IDS.forget(keys[i])  # merged or deleted in Marketo since: look it up again on the retry
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
                    LEAD_IDS.put(key, lead["id"])
        return found

    def _post(
        self, path: str, records: list[dict[str, Any]], wrap: Callable[[list[dict[str, Any]]], dict[str, Any]]
    ) -> list[dict[str, Any] | DeliveryError]:
        """POST the records, one answer each in input order; over 1 MB (413), each half separately (§2.2)."""
        try:
            answer = self._call("POST", path, body=wrap(records))
        except TooLarge as error:
            if len(records) == 1:
                return [error]
            half = len(records) // 2
            return self._post(path, records[:half], wrap) + self._post(path, records[half:], wrap)
        result = answer.get("result")
        if not isinstance(result, list) or len(result) != len(records):
            count = len(result) if isinstance(result, list) else "no"
            raise DeliveryError(
                f"Marketo answered {count} results for {len(records)} records.",
                code="invalid_response",
                retryable=True,
                status_code=200,
            )
        return [item if isinstance(item, dict) else {} for item in result]

    def _call(self, method: str, path: str, *, body: Any = None, form: dict[str, str] | None = None) -> dict[str, Any]:
        """One REST call with the bearer token; the answer when `success` is true. A 601/602 gets one new token."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = orjson.dumps(body) if body is not None else form
        token, renewed = self.token.get().access_token, False
        while True:
            self.http.add_secret(token)
            extra, self.calls = self.calls > 0, self.calls + 1
            headers["Authorization"] = f"Bearer {token}"
            answer = self._json(
                self._request(method, f"{self.config.base}/rest/v1/{path}", data=data, headers=headers, extra=extra)
            )
            if answer.get("success") is True:
                return answer
            code, message = first_problem(answer.get("errors"))
            if code not in TOKEN_CODES or renewed:
                raise marketo_error(code, message)
            token, renewed = self.token.get(replacing=token).access_token, True

    def _fetch_token(self) -> tuple[dict[str, Any], float]:
        """Ask the identity endpoint; Marketo gives the same token until it expires, with the seconds it has left."""
        credentials = {"client_id": self.credentials.client_id, "client_secret": self.credentials.client_secret}
        for value in credentials.values():
            if quote_plus(value) != value:
                self.http.add_secret(quote_plus(value))  # the URL carries it encoded: redact that form too
        url = f"{self.config.base}/identity/oauth/token?" + urlencode(
            {"grant_type": "client_credentials", **credentials}
        )
        for _ in range(3):
            response = self._request("GET", url)
            if response.status_code == 401:
                raise DeliveryError(
                    f"Marketo refused the client id or secret ({describe_response(response)}).",
                    code="invalid_credentials",
                    hint=HINTS["invalid_credentials"],
                    status_code=401,
                )
            answer = self._json(response)
            token, expires_in = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
                raise DeliveryError(
                    "Marketo's identity endpoint answered without an access token.",
                    code="invalid_response",
                    retryable=True,
                    status_code=response.status_code,
                )
            self.http.add_secret(token)
            if expires_in > 0:
                return {"access_token": token}, float(expires_in)
            time.sleep(TOKEN_ROLLOVER_WAIT)
        raise DeliveryError(
            "Marketo kept answering with a token about to expire.", code="token_rollover", retryable=True
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except DeliveryError as error:
            if error.code == "dns_error" or NO_HOST.search(error.message):
                error.hint = WRONG_HOST
            raise

    def _json(self, response: requests.Response) -> dict[str, Any]:
        """A 2xx answer's JSON object; other statuses as the base class classifies them, 413 as TooLarge."""
        if response.status_code == 413:
            raise TooLarge(
                "The request is over Marketo's 1 MB limit.",
                code="payload_too_large",
                hint=HINTS["payload_too_large"],
                status_code=413,
            )
        if not 200 <= response.status_code < 300:
            result = self.classify(response)
            raise DeliveryError(
                result.error_message,
                code=result.error_code,
                retryable=result.outcome == "retry",
                throttled=result.outcome == "throttled",
                retry_after=result.retry_after,
                status_code=result.status_code,
                hint=WRONG_HOST if response.status_code == 404 else "",
            )
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise DeliveryError(
                f"Marketo answered HTTP {response.status_code} without its JSON envelope.",
                code="invalid_response",
                hint=WRONG_HOST,
                status_code=response.status_code,
            )
        return answer


def _skipped(answer: dict[str, Any]) -> DeliveryError:
    """A record Marketo skipped: its reasons (leads) or errors (activities, as the docs show), §2.5."""
    return marketo_error(*first_problem(answer.get("reasons") or answer.get("errors")))
