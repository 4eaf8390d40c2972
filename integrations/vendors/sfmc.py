"""Salesforce Marketing Cloud: contacts into a Journey Builder journey (API event entry), rows into a data extension.

Contract: reference/vendor-contracts.md §1 (tokens §1.2, errors §1.3 and §1.8, journeys §1.4, rows §1.5).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import orjson
import requests

from integrations.vendors.base import DeliveryError, Result, Vendor, describe_response, retry_after_seconds
from integrations.vendors.oauth import SharedToken, token_key

# One sentence per error a marketer can act on, keyed by Result.error_code ("code.kind" when it depends on the
# vendor). A code without an entry gets "temporary" when it is retried and "bad_request" when it fails.
HINTS: dict[str, str] = {
    "invalid_credentials": (
        "Marketing Cloud refused the client ID or secret: copy both again from Setup → Installed Packages → "
        "your package's API Integration component, which must be Server-to-Server (a Web App or Public App "
        "integration cannot get tokens this way)."
    ),
    "invalid_credentials.legacy": (
        "This integration was made in a legacy package, which cannot get v2 tokens: create a new installed package "
        "with a server-to-server API Integration component and use its client ID and secret."
    ),
    "token_refused": (
        "Marketing Cloud refused the token request (its message says why): check that account_id is the MID of a "
        "business unit the installed package has access to."
    ),
    "wrong_subdomain": (
        "Marketing Cloud does not answer at this address: copy the Authentication Base URI of the package's API "
        "Integration (Setup → Installed Packages) and set its subdomain (the part before .auth.marketingcloudapis.com)."
    ),
    "wrong_stack": (
        "Marketing Cloud says the token belongs to another stack or endpoint: take the subdomain (or both base URLs) "
        "from the same API Integration as the client ID."
    ),
    "not_authorized": (
        "Marketing Cloud refused a brand-new token: give the installed package the scope this call needs, and make "
        "sure account_id is the business unit (MID) that owns the journey or data extension."
    ),
    "insufficient_privileges.journey": (
        'The installed package lacks a permission: give its API Integration Journeys "Read" and "Execute" '
        "(Setup → Installed Packages → Edit component)."
    ),
    "insufficient_privileges.data_extension": (
        'The installed package lacks a permission: give its API Integration Data Extensions "Read" and "Write" '
        "(Setup → Installed Packages → Edit component)."
    ),
    "rate_limited": (
        "Marketing Cloud asked cdphub to slow down and deliveries resume by themselves: lower the destination's "
        "rate limit if this happens often."
    ),
    "temporarily_blocked": (
        "Marketing Cloud has temporarily blocked this account's API calls (too many at once), so deliveries wait "
        "5 minutes: lower the destination's concurrency and rate limit, and contact Salesforce support if it lasts."
    ),
    "temporary": (
        "Marketing Cloud had a temporary problem and cdphub retries by itself: nothing to do unless it lasts for "
        "hours (then check status.salesforce.com)."
    ),
    "unknown_event_definition_key": (
        "The Event Definition Key is case-sensitive and must match Journey Builder exactly: copy it from the "
        "journey's entry source (API Event → Event Definition Key) into config.event_definition_key."
    ),
    "journey_not_running": (
        "No running journey uses this Event Definition Key: activate the journey in Journey Builder (draft, "
        "paused and stopped journeys admit no one)."
    ),
    "unknown_data_field": (
        "A field in the mapping's Data is not a column of the journey's entry data extension: remove it from the "
        "mapping or add the column to the data extension."
    ),
    "missing_contact_key": (
        "The event has no userId and journeys need a contact key: filter this destination to identified users "
        "(events with a userId) or change the ContactKey mapping."
    ),
    "unknown_data_extension": (
        "No data extension has this External Key, or the package cannot write data extensions: copy the data "
        'extension\'s External Key into config.data_extension_key and give the package Data Extensions "Write".'
    ),
    "unknown_column": (
        "A mapped column does not exist in the data extension: remove it from the mapping or add the column to "
        "the data extension."
    ),
    "missing_primary_key": (
        "The row has no value for the data extension's primary key: map every primary key column in mapping.keys "
        "and filter this destination to events that have it (e.g. identified users)."
    ),
    "invalid_value": (
        "A value does not fit its field's data type (the message names the field): change the mapping or the "
        "field's type in Marketing Cloud."
    ),
    "missing_field": (
        "Marketing Cloud requires a field the request lacks (the message names it): add it to the mapping."
    ),
    "bad_request": (
        "Marketing Cloud refused the request (its message says why): fix the mapping or the setting it names."
    ),
}
# Retried network failures: the "temporary" hint.
RETRY_CODES = {"timeout", "connection_error", "dns_error", "dns_unavailable"}
TOKEN_PATH = "/v2/token"
BLOCKED_WAIT = 300.0  # 50200 comes without Retry-After; SFMC asks for a long back-off (§1.3)
DEFAULT_EXPIRES_IN = 1079  # what every observed token answer says, should one leave expires_in out (§1.2)
UNSAVED_ROWS = "unable to save rows for data extension id"
NO_SUCH_HOST = re.compile(r"name or service not known|nodename nor servname|no address associated|getaddrinfo failed")
JOURNEY_STOPPED = re.compile(r"no running journey|not running|not active|inactive|stopped")
MISSING = re.compile(r"does not exist|not found|invalid")

_FIRST_NAME = "traits.firstName || traits.first_name || context.traits.firstName || context.traits.first_name"
_LAST_NAME = "traits.lastName || traits.last_name || context.traits.lastName || context.traits.last_name"
_EMAIL = "traits.email || context.traits.email || properties.email"
_PHONE = "traits.phone || context.traits.phone"
CONTACT_DATA: dict[str, str] = {
    "userId": "userId",
    "email": _EMAIL,
    "firstName": _FIRST_NAME,
    "lastName": _LAST_NAME,
    "name": "traits.name || context.traits.name",
    "phone": _PHONE,
    "title": "traits.title || context.traits.title",
    "username": "traits.username || context.traits.username",
    "createdAt": "traits.createdAt || context.traits.createdAt",
}
ORDER_DATA: dict[str, str] = {
    "event": "event",
    "orderId": "properties.order_id || properties.orderId",
    "total": "properties.total || properties.revenue",
    "currency": "properties.currency",
}


@dataclass
class SfmcHosts:
    subdomain: str = ""  # e.g. mc563885gzs27c5t9-63k636ttgm
    auth_base_url: str = ""  # instead of a subdomain: the sandbox, a proxy
    rest_base_url: str = ""
    account_id: str | int | None = None  # MID of the business unit; blank: the package's own

    def check(self) -> list[str]:
        urls = [n for n in ("auth_base_url", "rest_base_url") if getattr(self, n)]
        problems = [
            f"{n}: must be an http(s) URL" for n in urls if not getattr(self, n).startswith(("http://", "https://"))
        ]
        if self.subdomain and urls:
            problems.append("subdomain: give either a subdomain or auth_base_url and rest_base_url, not both")
        elif self.subdomain and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", self.subdomain):
            problems.append(
                "subdomain: give only the subdomain, the part of the Authentication Base URI before "
                ".auth.marketingcloudapis.com"
            )
        elif not self.subdomain and len(urls) < 2:
            problems.append("subdomain: required (or both auth_base_url and rest_base_url)")
        if isinstance(self.account_id, str) and self.account_id and not self.account_id.isdigit():
            problems.append("account_id: must be the MID of a business unit (digits only)")
        return problems

    @property
    def auth(self) -> str:
        return self.auth_base_url.rstrip("/") or f"https://{self.subdomain}.auth.marketingcloudapis.com"

    @property
    def rest(self) -> str:
        return self.rest_base_url.rstrip("/") or f"https://{self.subdomain}.rest.marketingcloudapis.com"


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


@dataclass(kw_only=True)
class SfmcDataExtensionConfig(SfmcHosts):
    data_extension_key: str

    def check(self) -> list[str]:
        blank = not self.data_extension_key.strip()
        return super().check() + (["data_extension_key: required (the data extension's External Key)"] if blank else [])


@dataclass
class SfmcCredentials:
    client_id: str
    client_secret: str

    def check(self) -> list[str]:
        return [f"{name}: must not be blank" for name in ("client_id", "client_secret") if not getattr(self, name)]


class Sfmc(Vendor):
    """What both SFMC vendors share: the v2 token, one new token on a 401, and SFMC's error classes."""

    kind: ClassVar[str]  # picks the vendor's variant of a hint ("insufficient_privileges.journey")
    credentials_class = SfmcCredentials
    default_rate_limit = (2000, 60.0)
    default_concurrency = 4
    setup_errors = Vendor.setup_errors | {
        "invalid_credentials",
        "token_refused",
        "wrong_subdomain",
        "wrong_stack",
        "not_authorized",
        "insufficient_privileges",
        "unknown_event_definition_key",
        "journey_not_running",
        "unknown_data_extension",
    }
    mapping_shape: ClassVar[dict[str, tuple[bool, type, str]]]  # top-level key: (required, JSON type, what it holds)

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, credentials, *args, **kwargs)
        account = str(self.config.account_id or "")
        key = token_key("sfmc", self.config.auth, self.credentials.client_id, account, self.credentials.client_secret)
        self.token = SharedToken(key, self.destination_id, self.fetch_token, self.http.timeout)

    @classmethod
    def validate(cls, config: Any, credentials: Any, mapping: Any = None) -> list[str]:
        problems = super().validate(config, credentials, mapping)
        if not isinstance(mapping, dict) or not mapping:
            return problems
        names = " and ".join(cls.mapping_shape)
        problems += [
            f"mapping.{name}: unknown (this mapping has {names})" for name in mapping if name not in cls.mapping_shape
        ]
        for name, (required, kind, what) in cls.mapping_shape.items():
            value = mapping.get(name)
            if required if value is None else not isinstance(value, kind) or (required and not value):
                problems.append(f"mapping.{name}: {'required' if required else 'must be'}: {what}")
        return problems

    def hint(self, code: str) -> str:
        return HINTS.get(f"{code}.{self.kind}") or HINTS.get(code, "")

    def fail(self, code: str, message: str, *, status: int | None = None, hint: str = "") -> DeliveryError:
        return DeliveryError(message, code=code, status_code=status, hint=hint or self.hint(code))

    # Token -------------------------------------------------------------------------------------------

    def fetch_token(self) -> tuple[dict[str, Any], float]:
        """POST /v2/token (§1.2); raise DeliveryError with the class SFMC's answer belongs to."""
        body: dict[str, Any] = {
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        if self.config.account_id not in (None, ""):
            body["account_id"] = self.config.account_id
        url = self.config.auth + TOKEN_PATH
        headers = {"Content-Type": "application/json"}
        try:
            response = self.http.request("POST", url, data=orjson.dumps(body), headers=headers)
        except DeliveryError as exc:
            no_such_host = exc.code == "connection_error" and NO_SUCH_HOST.search(exc.message.lower())
            if exc.code == "dns_error" or no_such_host:
                raise self.fail("wrong_subdomain", exc.message) from None
            raise
        status, data = response.status_code, _json(response)
        said = f"Token request: {describe_response(response)}"
        if status == 429 or (status >= 500 and status != 596):
            raise self.rest_error(response, "Token request: ")
        if status in (401, 403) or data.get("error") == "invalid_client":
            legacy = "not eligible to use the /v2/token endpoint" in response.text
            hint = HINTS["invalid_credentials.legacy" if legacy else "invalid_credentials"]
            raise self.fail("invalid_credentials", said, status=status, hint=hint)
        if status in (404, 596) or not data:
            raise self.fail("wrong_subdomain", said, status=status)  # not SFMC's auth host: an HTML page, nothing
        if not 200 <= status < 300:
            raise self.fail("token_refused", said, status=status)
        if not isinstance(data.get("access_token"), str) or not data["access_token"]:
            raise self.fail("wrong_subdomain", said + " (the answer has no access_token)", status=status)
        expires_in = data.get("expires_in")
        number = isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
        return {"access_token": data["access_token"]}, float(expires_in if number else DEFAULT_EXPIRES_IN)

    # REST --------------------------------------------------------------------------------------------

    def post(self, url: str, body: Any, *, extra: bool = False) -> requests.Response:
        """POST with the shared token; on a 401 get a new token and try once more (§1.2, §1.8)."""
        token = self.token.get().access_token
        response = self._post(url, body, token, extra)
        if response.status_code == 401:
            response = self._post(url, body, self.token.get(replacing=token).access_token, True)
        return response

    def _post(self, url: str, body: Any, token: str, extra: bool) -> requests.Response:
        self.http.add_secret(token)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return self.http.request("POST", url, data=orjson.dumps(body), headers=headers, extra=extra)

    def preview_call(self, url: str, body: Any) -> dict[str, Any]:
        """A REST POST as the Event Tester shows it: the bearer token masked, the token call named."""
        headers = {"Authorization": "Bearer (access token)", "Content-Type": "application/json"}
        note = f"After an OAuth token call to {self.config.auth}{TOKEN_PATH} (a token is reused until it expires)."
        return {"method": "POST", "url": url, "headers": self.masked_headers(headers), "body": body, "note": note}

    def call(self, url: str, body: Any, *, extra: bool = False) -> tuple[Result, Any]:
        """One POST, classified, with its exchanges (token calls included); also the JSON of a 2xx answer."""
        data = None
        try:
            response = self.post(url, body, extra=extra)
            result = self.classify(response)
            data = _json(response, any_type=True) if result.ok else None
        except DeliveryError as exc:  # a token refusal, a timeout, a connection error, our own rate limit
            result = exc.result([])
            result.hint = result.hint or (HINTS["temporary"] if exc.code in RETRY_CODES else "")
        result.error_message = self.http.redact_text(result.error_message)
        result.exchanges = self.http.take_exchanges()
        return result, data

    def classify(self, response: requests.Response) -> Result:
        status = response.status_code
        if 200 <= status < 300:
            return Result("delivered", status_code=status)
        return self.rest_error(response).result([])

    def rest_error(self, response: requests.Response, prefix: str = "") -> DeliveryError:
        """SFMC's REST error classes (§1.3, §1.8) as one DeliveryError."""
        status, data = response.status_code, _json(response)
        errorcode = data.get("errorcode") if isinstance(data.get("errorcode"), int) else None
        extra_errors = data.get("additionalErrors")
        message = _said(data) or describe_response(response).partition(": ")[2]
        text = f"{prefix}HTTP {status}" + (f", errorcode {errorcode}" if errorcode is not None else "") + f": {message}"
        header = retry_after_seconds(response.headers.get("Retry-After"))
        body_after = data.get("retryAfter")
        retry_after = header if header is not None else body_after if isinstance(body_after, int | float) else None
        if status == 429 and errorcode == 50200:
            code, retry_after = "temporarily_blocked", BLOCKED_WAIT
        elif status == 429:
            code = "rate_limited"
        elif status >= 500 and status != 596:
            code = f"http_{status}"
        elif status == 400 and errorcode == 10006 and UNSAVED_ROWS in message.lower() and not extra_errors:
            code = "rows_not_saved"  # SFMC's transient DE failure: Segment retries it as a 500 (§1.8)
        elif status == 596 or (status == 404 and errorcode is None):  # SFMC's own 404s carry an errorcode
            code = "wrong_subdomain"
        elif status == 401:
            code = "not_authorized"  # the second 401: post() already replaced the token once
        elif status == 403 and errorcode is not None and 40000 <= errorcode <= 40003:
            code = "wrong_stack"
        elif status == 403:
            code = "insufficient_privileges"
        else:
            code = self.recognise(status, errorcode, message, bool(extra_errors))
        throttled = status == 429
        retryable = throttled or code == "rows_not_saved" or code.startswith("http_5")
        hint = self.hint(code) or (HINTS["temporary"] if retryable else HINTS["bad_request"])
        return DeliveryError(
            text,
            code=code,
            retryable=retryable,
            throttled=throttled,
            retry_after=retry_after if retryable else None,
            hint=hint,
            status_code=status,
        )

    def recognise(self, status: int, errorcode: int | None, message: str, aggregate: bool) -> str:
        """A stable code for a refused payload: the vendor's own cases first, then SFMC's code classes."""
        if errorcode in (10001, 10005) or aggregate:
            return "invalid_value"
        if errorcode == 10002:
            return "missing_field"
        return "bad_request" if status == 400 else f"http_{status}"


def _json(response: requests.Response, *, any_type: bool = False) -> Any:
    """The answer's JSON: a dict (empty when it is not a JSON object) unless `any_type`."""
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    return data if any_type or isinstance(data, dict) else {}


def _said(data: dict[str, Any]) -> str:
    """What SFMC said: the first additional error is the specific one (§1.8)."""
    extra = data.get("additionalErrors")
    if isinstance(extra, list) and extra and isinstance(extra[0], dict) and extra[0].get("message"):
        return str(extra[0]["message"])
    for key in ("message", "error_description", "error"):
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    return ""


def _text(value: Any) -> str | None:
    """A key value as SFMC takes it, or None when there is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _present(value: Any) -> dict[str, Any]:
    """The mapped object without its null fields (SFMC would store them as empty values)."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else {}


def _copies(result: Result, count: int) -> list[Result]:
    return [dataclasses.replace(result) for _ in range(count)]


class SfmcJourney(Sfmc):
    """Enter contacts into the journeys listening on an API event (§1.4): one event sync, several async."""

    key = "sfmc_journey"
    label = "Salesforce Marketing Cloud journey"
    kind = "journey"
    config_class = SfmcJourneyConfig
    reenters_contacts = True
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
        contact = _text(mapped.get("ContactKey"))
        if contact is None:
            message = "The mapped ContactKey is empty: the event has no contact key (userId) to enter the journey."
            raise self.fail("missing_contact_key", message)
        return contact, _present(mapped.get("Data"))

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


class SfmcDataExtension(Sfmc):
    """Upsert rows into a data extension through the synchronous rowset route (§1.5), 50 rows a call."""

    key = "sfmc_data_extension"
    label = "Salesforce Marketing Cloud data extension"
    kind = "data_extension"
    config_class = SfmcDataExtensionConfig
    max_batch = 50  # SFMC's advice for rowset calls
    calls_per_batch = 52  # the call, once more after a 401, and one per row when SFMC refuses part of the batch
    mapping_shape = {
        "keys": (True, dict, 'an object of primary key column → expression, e.g. {"ContactKey": "userId"}'),
        "values": (False, dict, "an object of column → expression"),
    }
    default_mapping: ClassVar[dict[str, Any]] = {
        "keys": {"ContactKey": "userId"},
        "values": {
            "Email": _EMAIL,
            "FirstName": _FIRST_NAME,
            "LastName": _LAST_NAME,
            "Phone": _PHONE,
            "Plan": "traits.plan || context.traits.plan",
            "LastSeen": "timestamp",
        },
    }

    def recognise(self, status: int, errorcode: int | None, message: str, aggregate: bool) -> str:
        text = message.lower()
        if status == 400 and "primary key" in text:
            return "missing_primary_key"
        if status == 400 and "column" in text and "does not exist" in text:
            return "unknown_column"
        if (status == 404 and errorcode == 30003) or (
            "data extension" in text and re.search("does not exist|not found", text)
        ):
            return "unknown_data_extension"
        return super().recognise(status, errorcode, message, aggregate)

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        results: dict[int, Result] = {}
        rows: list[tuple[int, dict[str, Any]]] = []
        for i, event in enumerate(events):
            try:
                rows.append((i, self.row(event)))
            except DeliveryError as error:
                results[i] = error.result([])
        url = self.rowset_url
        if rows:
            batch, _ = self.call(url, [row for _, row in rows])
            if batch.outcome == "failed" and batch.status_code == 400 and len(rows) > 1:
                outcomes = self.one_by_one(url, [row for _, row in rows], batch.exchanges)
            else:
                outcomes = _copies(batch, len(rows))
            for (i, _), result in zip(rows, outcomes, strict=True):
                results[i] = result
        return [results[i] for i in range(len(events))]

    def row(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event's row ({"keys", "values"}); DeliveryError when a primary key has no value."""
        mapped = self.map_event(event)
        mapped = mapped if isinstance(mapped, dict) else {}
        keys = mapped.get("keys") if isinstance(mapped.get("keys"), dict) else {}
        blank = [name for name, value in keys.items() if _text(value) is None]
        if not keys or blank:
            message = f"The row has no value for the primary key {', '.join(blank) or '(mapping.keys is empty)'}."
            raise self.fail("missing_primary_key", message)
        return {"keys": keys, "values": _present(mapped.get("values"))}

    @property
    def rowset_url(self) -> str:
        return f"{self.config.rest}/hub/v1/dataevents/key:{quote(self.config.data_extension_key, safe='')}/rowset"

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.preview_call(self.rowset_url, [self.row(event)])]

    def one_by_one(self, url: str, rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[Result]:
        """Resend each row alone after a refused batch: SFMC saved the rows before the first bad one and rejected
        the rest without saying which (§1.5); upserts are idempotent, so only the bad rows fail."""
        outcomes: list[Result] = []
        for n, row in enumerate(rows):
            result, _ = self.call(url, [row], extra=True)
            result.exchanges = before + result.exchanges
            if not (result.ok or (result.outcome == "failed" and result.status_code == 400)):
                return outcomes + _copies(result, len(rows) - n)  # not about this row: the rest share it
            outcomes.append(result)
        return outcomes
