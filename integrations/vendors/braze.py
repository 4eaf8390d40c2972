"""Braze: identify events update user attributes, track events log custom events and orders log purchases, all
through POST /users/track, each event with its own result: https://www.braze.com/docs/api/endpoints/user_data/post_user_track
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
import requests

from integrations.mapping import apply_mapping
from integrations.vendors.contract import DeliveryError, Result, Vendor
from integrations.vendors.http import describe_response, retry_after_seconds

# Braze now counts 75 objects per request across the three arrays (it was 75 per array): the combined count keeps
# both rules. MAU-priced contracts allow fewer, hence the setting. https://braze.com/docs/api/api_limits
MAX_OBJECTS = 75
MAX_QUANTITY = 100  # per purchase object: https://www.braze.com/docs/api/objects_filters/purchase_object
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}  # http only for a sandbox on this machine
# Where the REST endpoint of each instance is listed: https://braze.com/docs/user_guide/administer/personal/sdk_endpoints/
DASHBOARD = [
    (re.compile(r"dashboard-10\.braze\.com"), "rest.us-10.braze.com"),  # US-10 moved to dashboard.us-10 and rest.us-10
    (re.compile(r"dashboard-(\d\d)\.braze\.com"), r"rest.iad-\1.braze.com"),
    (re.compile(r"dashboard-(\d\d)\.braze\.eu"), r"rest.fra-\1.braze.eu"),
    (re.compile(r"dashboard\.([a-z]{2}-\d\d)\.braze\.(com|eu)"), r"rest.\1.braze.\2"),
    (re.compile(r"sdk\.(.+\.braze\.(?:com|eu))"), r"rest.\1"),
]
PRODUCT_FIELDS = {"product_id", "sku", "price", "quantity", "currency"}  # the rest of a product are its properties
# Braze refuses property keys that start with $, and time and event_name are its own (RudderStack strips them too):
# https://www.braze.com/docs/api/objects_filters/event_object
RESERVED = {"time", "event_name"}
# Braze's standard attributes: https://www.braze.com/docs/api/objects_filters/user_attributes_object
GENDERS = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F", "w": "F", "o": "O", "other": "O"}
GENDERS |= {"n": "N", "not applicable": "N", "p": "P", "prefer not to say": "P"}
# The default mapping, section by section; JMESPath over the event, a purchase's also over `product`, the order's
# product it is built from. A section given as one expression (traits, product) leaves out what the default maps.
ATTRIBUTES = {
    "first_name": "traits.firstName || traits.first_name",
    "last_name": "traits.lastName || traits.last_name",
    "email": "traits.email",
    "phone": "traits.phone",
    "dob": "traits.birthday",
    "gender": "traits.gender",
    "home_city": "traits.address.city",
    "country": "traits.address.country",
    "image_url": "traits.avatar",
}
# The traits the standard attributes read (firstName, address, …): the other traits become custom attributes.
TAKEN_TRAITS = {name for expression in ATTRIBUTES.values() for name in re.findall(r"traits\.(\w+)", expression)}
EVENT = {"name": "event", "time": "timestamp", "properties": "properties"}
PURCHASE = {
    "product_id": "product.product_id || product.sku",
    "price": "product.price",
    "quantity": "product.quantity",
    "currency": "product.currency || properties.currency",
    "time": "timestamp",
    "properties": "product",
}
DEFAULT_MAPPING = {"attributes": ATTRIBUTES, "custom_attributes": "traits", "event": EVENT, "purchase": PURCHASE}
SECTIONS = {"attributes": dict, "custom_attributes": (str, dict), "event": dict, "purchase": dict}
TEMPORARY = "Braze had a passing problem and cdphub retries by itself: nothing to do unless it lasts."
INVALID = "Braze refused a value (its message names it): fix it at the event's source or in the mapping."
HINTS = {
    "invalid_api_key": "Copy a REST API key with the users.track permission (Settings → APIs and Identifiers), "
    "without quotes, and check that rest_endpoint is your dashboard's instance: another instance refuses the key too.",
    "access_denied": "Create a REST API key with the users.track permission and an IP allowlist that lets this hub "
    "in: Braze cannot change an existing key's permissions.",
    "wrong_endpoint": "Set rest_endpoint to the REST endpoint of your dashboard's instance, like "
    "https://rest.iad-01.braze.com.",
    "rate_limited": "Deliveries resume by themselves: lower this destination's rate limit if it happens often (the "
    "workspace's limit is shared by all its integrations).",
    "too_many_objects": "Set config.objects_per_request to 50, the limit of MAU-priced Braze contracts.",
    "payload_too_large": "Map fewer or shorter traits and properties: the request was too large for Braze.",
    "bad_request": "Braze refused cdphub's request itself (its message says why): report it with these exchanges.",
    "missing_user_id": "Filter this destination to identified users (events with a userId), or set "
    "config.anonymous_alias_label to send anonymous users as Braze user aliases.",
    "not_for_vendor": "Filter this destination to identify and track events, the ones Braze takes.",
    "invalid_event_name": "Rename the event at its source, or map mapping.event.name: Braze takes 1 to 255 "
    "characters, not starting with $.",
    "invalid_product": "Give every product a product_id or sku, a numeric price and a whole quantity of at least 1, "
    "at the source or in mapping.purchase.",
    "invalid_currency": "Send a three-letter currency such as EUR in properties.currency, or set "
    "config.default_currency.",
    "too_many_products": "Raise config.objects_per_request to 75, or take the event out of config.purchase_events to "
    "send it as a custom event.",
    "missing_identifier": "Make sure the event's source sets userId to a non-empty string.",
    "invalid_email": "Fix the email trait at its source, or map the email attribute from a field of valid addresses.",
    "blocked_external_id": 'Braze refuses placeholder user ids such as "null" or "undefined": fix how the site or '
    "app sets userId.",
    "invalid_value": INVALID,
    "invalid_data": INVALID,  # a 400: Braze refused every object of the request
}
# Minor errors are sentences, not codes (https://braze.com/docs/api/errors): the first phrase found picks the hint.
OBJECT_ERRORS = {"blacklisted": "blocked_external_id", "braze_id": "missing_identifier", "email": "invalid_email"}


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


KEY_PROBLEM = "api_key: required: paste the REST API key alone, without quotes or spaces"


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

    def add(self, index: int, parts: list[tuple[str, dict[str, Any]]]) -> None:
        self.events.append(index)
        self.size += len(parts)
        for array, item in parts:
            self.body.setdefault(array, []).append(item)
            self.owners.setdefault(array, []).append(index)


class Braze(Vendor):
    key = "braze"
    label = "Braze"
    config_class = BrazeConfig
    credentials_class = BrazeCredentials
    hints = HINTS
    default_mapping = DEFAULT_MAPPING  # a destination's mapping replaces it section by section
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "profiles": {
            "label": "Braze profiles from identify",
            "filter": {"types": ["identify"], "events": [], "condition": None},
            "mapping": {"attributes": ATTRIBUTES, "custom_attributes": "traits"},
        },
        "events_and_purchases": {
            "label": "Braze custom events and purchases from track",
            "filter": {"types": ["track"], "events": [], "condition": None},
            "mapping": {"event": EVENT, "purchase": PURCHASE},
        },
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
        kind = event.get("type")
        if kind not in ("identify", "track"):
            return f"Braze takes identify and track events only, not {kind} events"
        if user_id(event) or (isinstance(config, dict) and config.get("anonymous_alias_label")):
            return ""
        return "the event has no userId: set config.anonymous_alias_label to send anonymous users to Braze as aliases"

    def fail(self, code: str, message: str) -> DeliveryError:
        return DeliveryError(message, code=code, hint=HINTS[code])

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.credentials.api_key}"}

    def map_event(self, event: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The event's part of a /users/track body; DeliveryError when Braze could not take it."""
        request = Request()
        request.add(0, self.objects(event))
        return request.body

    def objects(self, event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(array, object) for each Braze object the event becomes, its identity first and not mappable."""
        kind, properties = event.get("type"), event.get("properties")
        if kind not in ("identify", "track"):
            raise self.fail("not_for_vendor", f"Braze takes identify and track events only, not {kind} events.")
        who = self.identity(event)
        if kind == "identify":
            return [("attributes", {**who, **self.attributes(event), **who})]
        products = properties.get("products") if isinstance(properties, dict) else None
        if event.get("event") not in self.config.purchase_events or not isinstance(products, list) or not products:
            return [("events", {**who, **self.custom_event(event), **who})]
        parts = [("purchases", {**who, **item, **who}) for item in self.purchases(event, products)]
        if len(parts) > self.config.objects_per_request:
            message = f"The order makes {len(parts)} purchase objects; one request takes {self.max_batch}."
            raise self.fail("too_many_products", message)
        return parts

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
        if "gender" in standard:  # M, F, O, N or P: Braze takes nothing else
            standard["gender"] = GENDERS.get(str(standard["gender"]).strip().lower())
        spec = self.mapping["custom_attributes"]
        custom = apply_mapping(spec, event)
        custom = custom if isinstance(custom, dict) else {}
        # A whole object (traits) keeps its nulls, which unset the attributes in Braze; named fields drop theirs.
        if isinstance(spec, str):
            custom = {k: v for k, v in custom.items() if k not in TAKEN_TRAITS}
        else:
            custom = {k: v for k, v in custom.items() if v is not None}
        return {**custom, **{k: v for k, v in standard.items() if v is not None}}

    def custom_event(self, event: dict[str, Any]) -> dict[str, Any]:
        found = mapped(self.mapping["event"], event)
        name, extra = found.get("name"), found.pop("properties", None)
        if not isinstance(name, str) or not name or name.startswith("$") or len(name) > 255:
            raise self.fail("invalid_event_name", f"{name!r} is not an event name Braze takes.")
        return {**found, "time": braze_time(found.get("time") or event.get("timestamp")), **properties_of(extra, set())}

    def purchases(self, event: dict[str, Any], products: list[Any]) -> list[dict[str, Any]]:
        spec, of = self.mapping["purchase"], f"of {len(products)}"
        found: list[dict[str, Any]] = []
        for n, product in enumerate(products, 1):
            item = mapped(spec, {**event, "product": product if isinstance(product, dict) else {}})
            taken = PRODUCT_FIELDS if isinstance(spec.get("properties"), str) else set()
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
            if not batches or batches[-1].size + len(parts) > self.config.objects_per_request:
                batches.append(Request())
            batches[-1].add(i, parts)  # an order's purchases stay together
        ended: Result | None = None
        for n, batch in enumerate(batches):
            if ended is None:
                answers, ended = self.post(batch, extra=n > 0)
                results |= answers
            else:  # the next requests would only meet the same refusal or rate limit
                results |= {i: dataclasses.replace(ended) for i in batch.events}
        return [results[i] for i in range(len(events))]

    def post(self, batch: Request, *, extra: bool) -> tuple[dict[int, Result], Result | None]:
        """One /users/track call: each event's Result, and the Result that ends the batch (None: go on)."""
        try:
            body, headers = orjson.dumps(batch.body), self.headers()
            response = self.http.request("POST", self.url, data=body, headers=headers, extra=extra)
        except DeliveryError as error:  # a timeout, a refused connection, our own rate limit
            if error.code == "dns_error":  # no such host: a typo in rest_endpoint rather than a passing problem
                error = DeliveryError(error.message, code="wrong_endpoint", hint=HINTS["wrong_endpoint"])
            result = error.result(self.http.take_exchanges())
            result.hint = result.hint or (TEMPORARY if error.retryable else "")
            return {i: dataclasses.replace(result) for i in batch.events}, result
        result = self.classify(response)
        result.error_message = self.http.redact_text(result.error_message)  # Braze may echo the key
        result.exchanges = self.http.take_exchanges()
        answers = {i: dataclasses.replace(result) for i in batch.events}
        refused: dict[int, list[str]] = {}
        # Minor errors name an object by array and index (a plain-string one names none and fails no event).
        for error in json_list(response, "errors") if result.ok or result.error_code == "invalid_data" else []:
            owners = batch.owners.get(str(error.get("input_array")), []) if isinstance(error, dict) else []
            index = error.get("index") if owners else None
            if isinstance(index, int) and 0 <= index < len(owners):
                refused.setdefault(owners[index], []).append(f"{error['input_array']}[{index}]: {error.get('type')}")
        for i, reasons in refused.items():
            code = next((c for text, c in OBJECT_ERRORS.items() if text in reasons[0].lower()), "invalid_value")
            message = self.http.redact_text("Braze refused " + "; ".join(reasons))
            answers[i] = Result("failed", response.status_code, code, message, HINTS[code], None, result.exchanges)
        ends = result.outcome in ("retry", "throttled") or result.error_code in self.setup_errors
        return answers, result if ends else None

    def classify(self, response: requests.Response) -> Result:
        """Braze's HTTP classes (https://braze.com/docs/api/errors); minor errors are post()'s."""
        status = response.status_code
        if 200 <= status < 300:
            return Result("delivered", status_code=status)
        said = describe_response(response)
        if status == 429:
            return Result("throttled", status, "rate_limited", said, HINTS["rate_limited"], wait_after(response))
        if status == 408 or status >= 500:
            return Result("retry", status, f"http_{status}", said, TEMPORARY, wait_after(response))
        found = {401: "invalid_api_key", 403: "access_denied", 404: "wrong_endpoint", 413: "payload_too_large"}
        code = "wrong_endpoint" if status < 400 else found.get(status, f"http_{status}")
        said += " (redirects are not followed: use the final URL)" if status < 400 else ""
        if status == 400:
            lowered = said.lower()
            code = "too_many_objects" if "max input length" in lowered else "bad_request"
            code = "invalid_data" if "valid data must be provided" in lowered else code
        return Result("failed", status, code, said, HINTS.get(code) or HINTS["bad_request"])

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        body, headers = self.map_event(event), self.masked_headers(self.headers())
        note = f"Bearer auth with the REST API key (hidden here); events share a call, up to {self.max_batch} objects."
        return [{"method": "POST", "url": self.url, "headers": headers, "body": body, "note": note}]


def user_id(event: dict[str, Any]) -> str:
    found = event.get("userId")  # ingest has made a number a string
    return found if isinstance(found, str) and found.strip() else ""


def mapped(spec: Any, event: dict[str, Any]) -> dict[str, Any]:
    """A mapping section applied to the event, without its nulls ({} when it does not give an object)."""
    found = apply_mapping(spec, event)
    return {k: v for k, v in found.items() if v is not None} if isinstance(found, dict) else {}


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


def json_list(response: requests.Response, key: str) -> list[Any]:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    found = data.get(key) if isinstance(data, dict) else None
    return found if isinstance(found, list) else []


def wait_after(response: requests.Response) -> float | None:
    """Seconds to wait: X-RateLimit-Retry-After, Retry-After, then X-RateLimit-Reset (None: the usual backoff)."""
    headers = response.headers  # case-insensitive: Braze's names arrive lower-case over HTTP/2
    for name in ("X-RateLimit-Retry-After", "Retry-After"):
        if (seconds := retry_after_seconds(headers.get(name))) is not None:
            return seconds
    try:
        reset = float(headers.get("X-RateLimit-Reset", ""))
    except ValueError:
        return None
    # Braze documents epoch seconds, RudderStack saw seconds until the reset: past 10^9 it can only be a time.
    return max(0.0, reset - time.time()) if reset > 1e9 else max(0.0, reset)
