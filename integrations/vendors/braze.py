"""Braze: identify events update user attributes, track events log custom events and orders log purchases, all
through POST /users/track, each event with its own result: https://www.braze.com/docs/api/endpoints/user_data/post_user_track
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
import requests

from integrations.mapping import apply_mapping
from integrations.vendors.contract import DeliveryError, Result, Vendor
from integrations.vendors.http import describe_response, retry_after_seconds

# The long tables are data beside the module: hints, dashboard hosts, gender letters, the default mapping.
DATA: dict[str, Any] = json.loads((Path(__file__).parent / "braze.json").read_text(encoding="utf-8"))
HINTS: dict[str, str] = DATA["hints"]
# Braze now counts 75 objects per request across the three arrays (it was 75 per array): the combined count keeps
# both rules. MAU-priced contracts allow fewer, hence the setting. https://braze.com/docs/api/api_limits
MAX_OBJECTS = 75
MAX_QUANTITY = 100  # per purchase object: https://www.braze.com/docs/api/objects_filters/purchase_object
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}  # http only for a sandbox on this machine
# A dashboard's host gives its instance's REST host (dashboard-10 is US-10, now rest.us-10, not rest.iad-10):
# https://braze.com/docs/user_guide/administer/personal/sdk_endpoints/
DASHBOARD = [(re.compile(pattern), rest) for pattern, rest in DATA["dashboard_to_rest"]]
PRODUCT_FIELDS = {"product_id", "sku", "price", "quantity", "currency"}  # the rest of a product are its properties
# Braze refuses property keys that start with $, and time and event_name are its own (RudderStack strips them too):
# https://www.braze.com/docs/api/objects_filters/event_object
RESERVED = {"time", "event_name"}
# M, F, O, N or P, Braze takes nothing else: https://www.braze.com/docs/api/objects_filters/user_attributes_object
GENDERS: dict[str, str] = DATA["genders"]
# Section by section; JMESPath over the event, a purchase's also over `product`, the order's product it is built
# from. A section given as one expression (traits, product) leaves out what the other fields map.
DEFAULT_MAPPING: dict[str, Any] = DATA["default_mapping"]
# The traits the standard attributes read (firstName, address, …): the other traits become custom attributes.
TAKEN_TRAITS = {name for path in DEFAULT_MAPPING["attributes"].values() for name in re.findall(r"traits\.(\w+)", path)}
SECTIONS = {"attributes": dict, "custom_attributes": (str, dict), "event": dict, "purchase": dict}
# Minor errors are sentences, not codes (https://braze.com/docs/api/errors): the first phrase found picks the code,
# so the missing-identifier sentence (which names 'email' too) is not taken for an email error.
OBJECT_ERRORS = {"blacklisted": "blocked_external_id", "braze_id": "missing_identifier", "email": "invalid_email"}
BAD_REQUESTS = {"valid data must be provided": "invalid_data", "max input length": "too_many_objects"}
STATUS_CODES = {401: "invalid_api_key", 403: "access_denied", 404: "wrong_endpoint", 413: "payload_too_large"}
TAKES_ONLY = "Braze takes identify and track events only, not {} events"
KEY_PROBLEM = "api_key: required: paste the REST API key alone, without quotes or spaces"


@dataclass
class BrazeConfig:
    rest_endpoint: str  # the REST endpoint of the dashboard's instance, e.g. https://rest.iad-01.braze.com
    purchase_events: list[str] = field(default_factory=lambda: ["Order Completed"])
    default_currency: str = "USD"  # for products without a currency; "" refuses them instead of guessing
    anonymous_alias_label: str = ""  # set: events without userId go as the user alias (anonymousId, this label)
    objects_per_request: int = MAX_OBJECTS

    def check(self) -> list[str]:
        problems: list[str] = []
        parts = urlsplit(self.rest_endpoint)
        host = (parts.hostname or "").lower()
        rest = next((pattern.sub(to, host) for pattern, to in DASHBOARD if pattern.fullmatch(host)), "")
        if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
            problems.append("rest_endpoint: must be a URL like https://rest.iad-01.braze.com")
        elif parts.scheme == "http" and host not in LOCAL_HOSTS:
            problems.append("rest_endpoint: must start with https:// (http is only for a local sandbox)")
        elif rest or (host.endswith((".braze.com", ".braze.eu")) and not host.startswith("rest.")):
            use = f"https://{rest}" if rest else "your dashboard's, like https://rest.iad-01.braze.com for dashboard-01"
            problems.append(f"rest_endpoint: {host} is not a REST endpoint: use {use}")
        elif parts.path.rstrip("/").endswith("/users/track"):
            problems.append("rest_endpoint: leave out /users/track: https://rest.iad-01.braze.com")
        if not all(name.strip() for name in self.purchase_events):
            problems.append('purchase_events: must be a list of event names, like ["Order Completed"]')
        if self.default_currency and not re.fullmatch(r"[A-Za-z]{3}", self.default_currency):
            problems.append('default_currency: must be a three-letter ISO 4217 code such as USD, or ""')
        if not 1 <= self.objects_per_request <= MAX_OBJECTS:
            problems.append(f"objects_per_request: must be between 1 and {MAX_OBJECTS} (50 for MAU-priced contracts)")
        return problems


@dataclass
class BrazeCredentials:
    api_key: str

    def check(self) -> list[str]:
        key = self.api_key.strip()  # Braze answers a quoted key with 401, as it does a wrong one
        return [] if key and key == self.api_key and key[0] not in "\"'" else [KEY_PROBLEM]


@dataclass
class Request:
    """One /users/track body and, per array, which event each object came from."""

    body: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    owners: dict[str, list[int]] = field(default_factory=dict)
    events: list[int] = field(default_factory=list)
    size: int = 0

    def add(self, index: int, parts: list[tuple[str, dict[str, Any]]]) -> Request:
        self.events.append(index)
        self.size += len(parts)
        for array, item in parts:
            self.body.setdefault(array, []).append(item)
            self.owners.setdefault(array, []).append(index)
        return self


def preset(label: str, kind: str, sections: tuple[str, ...]) -> dict[str, Any]:
    """An admin form button: one event type and the default mapping's sections for it."""
    mapping = {name: DEFAULT_MAPPING[name] for name in sections}
    return {"label": label, "filter": {"types": [kind], "events": [], "condition": None}, "mapping": mapping}


class Braze(Vendor):
    key = "braze"
    label = "Braze"
    config_class = BrazeConfig
    credentials_class = BrazeCredentials
    hints = HINTS
    default_mapping = DEFAULT_MAPPING  # a destination's mapping replaces it section by section
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "profiles": preset("Braze profiles from identify", "identify", ("attributes", "custom_attributes")),
        "events_and_purchases": preset("Braze custom events and purchases from track", "track", ("event", "purchase")),
    }
    max_batch = MAX_OBJECTS  # one request in the usual case of one object per event
    calls_per_batch = MAX_OBJECTS  # an order of many products may need a request of its own
    # /users/track allows 3,000 requests per 3 s per workspace, shared with every other integration, and MAU
    # contracts have lower burst limits: a tenth of it still carries 7,500 objects a second.
    default_rate_limit = (100, 1.0)
    setup_errors = Vendor.setup_errors | {"invalid_api_key", "access_denied", "wrong_endpoint"}

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, credentials, *args, **kwargs)
        self.mapping = {**self.default_mapping, **(self.mapping if isinstance(self.mapping, dict) else {})}
        self.max_batch = self.config.objects_per_request
        self.url = self.config.rest_endpoint.rstrip("/") + "/users/track"

    @classmethod
    def validate(cls, config: Any, credentials: Any, mapping: Any = None) -> list[str]:
        problems = super().validate(config, credentials, mapping)
        for name, value in mapping.items() if isinstance(mapping, dict) else []:
            if not isinstance(value, SECTIONS.get(name, ())):
                kinds = {"custom_attributes": "an expression or an object"}.get(name, "an object")
                problems.append(f"mapping.{name}: " + (f"must be {kinds}" if name in SECTIONS else "unknown section"))
        return problems

    @classmethod
    def skip_reason(cls, config: dict[str, Any], event: dict[str, Any]) -> str:
        if (kind := event.get("type")) not in ("identify", "track"):
            return TAKES_ONLY.format(kind)
        if user_id(event) or (isinstance(config, dict) and config.get("anonymous_alias_label")):
            return ""
        return "the event has no userId: set config.anonymous_alias_label to send anonymous users to Braze as aliases"

    def fail(self, code: str, message: str) -> DeliveryError:
        return DeliveryError(message, code=code, hint=HINTS[code])

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.credentials.api_key}"}

    def map_event(self, event: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The event's part of a /users/track body; DeliveryError when Braze could not take it."""
        return Request().add(0, self.objects(event)).body

    def objects(self, event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(array, object) for each Braze object the event becomes."""
        kind, properties = event.get("type"), event.get("properties")
        if kind not in ("identify", "track"):
            raise self.fail("not_for_vendor", TAKES_ONLY.format(kind) + ".")
        who = self.identity(event)
        products = properties.get("products") if isinstance(properties, dict) else None
        if kind == "identify":
            parts = [("attributes", self.attributes(event))]
        elif event.get("event") in self.config.purchase_events and isinstance(products, list) and products:
            parts = [("purchases", item) for item in self.purchases(event, products)]
            if len(parts) > self.max_batch:
                message = f"The order makes {len(parts)} purchase objects; one request takes {self.max_batch}."
                raise self.fail("too_many_products", message)
        else:
            parts = [("events", self.custom_event(event))]
        # The identity leads each object and wins over the mapping: no mapping can send it to another profile.
        return [(array, {**who, **item, **who}) for array, item in parts]

    def identity(self, event: dict[str, Any]) -> dict[str, Any]:
        found, anonymous, label = user_id(event), event.get("anonymousId"), self.config.anonymous_alias_label
        if found:
            return {"external_id": found}
        if label and isinstance(anonymous, str) and anonymous:
            # "Update Only" is the default for a user_alias, so Braze would create no profile for it unless asked:
            # https://www.braze.com/docs/api/endpoints/user_data/post_user_track
            return {"user_alias": {"alias_name": anonymous, "alias_label": label}, "_update_existing_only": False}
        raise self.fail("missing_user_id", "The event has no userId, and Braze profiles are keyed by it.")

    def attributes(self, event: dict[str, Any]) -> dict[str, Any]:
        standard = mapped(self.mapping["attributes"], event)
        if "dob" in standard:
            standard["dob"] = birth_date(standard["dob"])
        if "gender" in standard:
            standard["gender"] = GENDERS.get(str(standard["gender"]).strip().lower())
        spec = self.mapping["custom_attributes"]
        # A whole object (traits) keeps its nulls, which unset the attributes in Braze; named fields drop theirs.
        custom = mapped(spec, event, keep_nulls=isinstance(spec, str))
        if isinstance(spec, str):
            custom = {k: v for k, v in custom.items() if k not in TAKEN_TRAITS}
        return {**custom, **{k: v for k, v in standard.items() if v is not None}}

    def custom_event(self, event: dict[str, Any]) -> dict[str, Any]:
        found = mapped(self.mapping["event"], event)
        name, extra = found.get("name"), found.pop("properties", None)
        if not isinstance(name, str) or not name or name.startswith("$") or len(name) > 255:
            raise self.fail("invalid_event_name", f"{name!r} is not an event name Braze takes.")
        return {**found, "time": braze_time(found.get("time") or event.get("timestamp")), **properties_of(extra, set())}

    def purchases(self, event: dict[str, Any], products: list[Any]) -> list[dict[str, Any]]:
        spec, of = self.mapping["purchase"], f"of {len(products)}"
        taken = PRODUCT_FIELDS if isinstance(spec.get("properties"), str) else set()
        found: list[dict[str, Any]] = []
        for n, product in enumerate(products, 1):
            item = mapped(spec, {**event, "product": product if isinstance(product, dict) else {}})
            extra = properties_of(item.pop("properties", None), taken)
            product_id, price, quantity = item.get("product_id"), item.get("price"), item.get("quantity", 1)
            currency = str(item.get("currency") or self.config.default_currency).upper()
            quantity = int(quantity) if isinstance(quantity, float) and quantity.is_integer() else quantity
            if product_id in (None, "") or not isinstance(price, int | float) or isinstance(price, bool):
                raise self.fail("invalid_product", f"Product {n} {of} has no product_id (or sku) or no numeric price.")
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
                raise self.fail("invalid_product", f"Product {n} {of} has quantity {quantity!r}, not a whole number.")
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise self.fail("invalid_currency", f"Product {n} {of} has no three-letter currency ({currency!r}).")
            item["time"] = braze_time(item.get("time") or event.get("timestamp"))
            item |= {"product_id": str(product_id), "currency": currency, **extra}
            # At most 100 per object, and Braze counts each unit as one purchase anyway: split, never clamp.
            found += [{**item, "quantity": min(left, MAX_QUANTITY)} for left in range(quantity, 0, -MAX_QUANTITY)]
        return found

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        results: dict[int, Result] = {}
        batches: list[Request] = []
        for i, event in enumerate(events):
            try:
                parts = self.objects(event)
            except DeliveryError as error:
                results[i] = error.result([])
                continue
            if not batches or batches[-1].size + len(parts) > self.max_batch:
                batches.append(Request())
            batches[-1].add(i, parts)  # an order's purchases stay together
        ended: Result | None = None
        for n, batch in enumerate(batches):
            # After a refused key or a rate limit, the next requests would only meet the same answer: not sent.
            answer, refused = (ended, {}) if ended else self.post(batch, extra=n > 0)
            results |= {i: replace(answer) for i in batch.events} | refused
            if answer.outcome in ("retry", "throttled") or answer.error_code in self.setup_errors:
                ended = answer
        return [results[i] for i in range(len(events))]

    def post(self, batch: Request, *, extra: bool) -> tuple[Result, dict[int, Result]]:
        """One /users/track call: its Result, and the Results of the events whose objects Braze refused."""
        try:
            body, headers = orjson.dumps(batch.body), self.headers()
            response = self.http.request("POST", self.url, data=body, headers=headers, extra=extra)
        except DeliveryError as error:  # a timeout, a refused connection, our own rate limit
            if error.code == "dns_error":  # no such host: a typo in rest_endpoint rather than a passing problem
                error = self.fail("wrong_endpoint", error.message)
            result = error.result(self.http.take_exchanges())
            result.hint = result.hint or (HINTS["temporary"] if error.retryable else "")
            return result, {}
        result = self.classify(response)
        result.error_message = self.http.redact_text(result.error_message)  # Braze may echo the key
        result.exchanges = self.http.take_exchanges()
        reasons: dict[int, list[str]] = {}
        # Minor errors name an object by array and index (a plain-string one names none and fails no event).
        for error in minor_errors(response) if result.ok or result.error_code == "invalid_data" else []:
            owners = batch.owners.get(str(error.get("input_array")), []) if isinstance(error, dict) else []
            index = error.get("index") if owners else None
            if isinstance(index, int) and 0 <= index < len(owners):
                reasons.setdefault(owners[index], []).append(f"{error['input_array']}[{index}]: {error.get('type')}")
        refused: dict[int, Result] = {}
        for i, said in reasons.items():
            code = next((c for text, c in OBJECT_ERRORS.items() if text in said[0].lower()), "invalid_value")
            message = self.http.redact_text("Braze refused " + "; ".join(said))
            refused[i] = Result("failed", response.status_code, code, message, HINTS[code], None, result.exchanges)
        return result, refused

    def classify(self, response: requests.Response) -> Result:
        """Braze's HTTP classes (https://braze.com/docs/api/errors); minor errors are post()'s."""
        status = response.status_code
        if 200 <= status < 300:
            return Result("delivered", status_code=status)
        said = describe_response(response)
        if status == 429:
            return Result("throttled", status, "rate_limited", said, HINTS["rate_limited"], wait_after(response))
        if status == 408 or status >= 500:
            return Result("retry", status, f"http_{status}", said, HINTS["temporary"], wait_after(response))
        if status < 400:
            said += " (redirects are not followed: use the final URL)"
            return Result("failed", status, "wrong_endpoint", said, HINTS["wrong_endpoint"])
        code = STATUS_CODES.get(status, f"http_{status}")
        if status == 400:
            code = next((c for text, c in BAD_REQUESTS.items() if text in said.lower()), "bad_request")
        return Result("failed", status, code, said, HINTS.get(code) or HINTS["bad_request"])

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        body, headers = self.map_event(event), self.masked_headers(self.headers())
        note = f"Bearer auth with the REST API key (hidden here); events share a call, up to {self.max_batch} objects."
        return [{"method": "POST", "url": self.url, "headers": headers, "body": body, "note": note}]


def user_id(event: dict[str, Any]) -> str:
    found = event.get("userId")  # ingest has made a number a string
    return found if isinstance(found, str) and found.strip() else ""


def mapped(spec: Any, event: dict[str, Any], *, keep_nulls: bool = False) -> dict[str, Any]:
    """A mapping section applied to the event, without its nulls unless kept ({} when it gives no object)."""
    found = apply_mapping(spec, event)
    return {k: v for k, v in found.items() if keep_nulls or v is not None} if isinstance(found, dict) else {}


def braze_time(value: Any) -> Any:
    """ISO 8601 in UTC with milliseconds; now when there is none, as given when it does not parse."""
    try:
        moment = datetime.fromisoformat(value) if value is not None else datetime.now(UTC)
    except (TypeError, ValueError):
        return value  # Braze names a bad time in a minor error: the event fails in its words
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def birth_date(value: Any) -> str | None:
    """Braze's dob is YYYY-MM-DD: a date or a timestamp gives its date; anything else is left out."""
    try:
        return date.fromisoformat(value[:10]).isoformat() if isinstance(value, str) else None
    except ValueError:
        return None


def properties_of(value: Any, taken: set[str]) -> dict[str, Any]:
    """{"properties": …} without the keys taken elsewhere or refused by Braze; nothing when none are left."""
    found = value if isinstance(value, dict) else {}
    kept = {k: v for k, v in found.items() if k and k[0] != "$" and k not in RESERVED and k not in taken}
    return {"properties": kept} if kept else {}


def minor_errors(response: requests.Response) -> list[Any]:
    """The `errors` of Braze's answer: objects naming an array and index, or plain strings ([] when none)."""
    try:
        found = orjson.loads(response.content).get("errors")
    except (orjson.JSONDecodeError, AttributeError):  # not JSON, or JSON but not an object
        return []
    return found if isinstance(found, list) else []


def wait_after(response: requests.Response) -> float | None:
    """Seconds to wait: X-RateLimit-Retry-After, Retry-After, then X-RateLimit-Reset (None: the usual backoff)."""
    # Headers are read case-insensitively: Braze's names arrive lower-case over HTTP/2.
    for name in ("X-RateLimit-Retry-After", "Retry-After", "X-RateLimit-Reset"):
        if (seconds := retry_after_seconds(response.headers.get(name))) is not None:
            # Braze documents Reset in epoch seconds, RudderStack saw seconds until it: past 10^9 it is a time.
            return max(0.0, seconds - time.time()) if seconds > 1e9 else seconds
    return None
