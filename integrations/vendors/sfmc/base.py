"""Salesforce Marketing Cloud, what both products share: the hosts, the v2 token (one new token on a 401), and
SFMC's REST error classes. Contract: reference/vendor-contracts.md §1 (tokens §1.2, errors §1.3 and §1.8).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import requests

from integrations.vendors.contract import DeliveryError, Result, Vendor, hints_beside
from integrations.vendors.http import describe_response, retry_after_seconds
from integrations.vendors.oauth import SharedToken, token_key

# One sentence per error a marketer can act on, keyed by Result.error_code ("code.kind" when it depends on the
# product). A code without an entry gets "temporary" when it is retried and "bad_request" when it fails.
HINTS = hints_beside(__file__)
# Retried network failures: the "temporary" hint.
RETRY_CODES = {"timeout", "connection_error", "dns_error", "dns_unavailable"}
TOKEN_PATH = "/v2/token"
BLOCKED_WAIT = 300.0  # 50200 comes without Retry-After; SFMC asks for a long back-off (§1.3)
DEFAULT_EXPIRES_IN = 1079  # what every observed token answer says, should one leave expires_in out (§1.2)
UNSAVED_ROWS = "unable to save rows for data extension id"
NO_SUCH_HOST = re.compile(r"name or service not known|nodename nor servname|no address associated|getaddrinfo failed")
JOURNEY_STOPPED = re.compile(r"no running journey|not running|not active|inactive|stopped")
MISSING = re.compile(r"does not exist|not found|invalid")

FIRST_NAME = "traits.firstName || traits.first_name || context.traits.firstName || context.traits.first_name"
LAST_NAME = "traits.lastName || traits.last_name || context.traits.lastName || context.traits.last_name"
EMAIL = "traits.email || context.traits.email || properties.email"
PHONE = "traits.phone || context.traits.phone"
CONTACT_DATA: dict[str, str] = {
    "userId": "userId",
    "email": EMAIL,
    "firstName": FIRST_NAME,
    "lastName": LAST_NAME,
    "name": "traits.name || context.traits.name",
    "phone": PHONE,
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
    hints = HINTS
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
        self.token = SharedToken(key, self.state.tokens, self.fetch_token, self.http.timeout)

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
        return self.hints.get(f"{code}.{self.kind}") or self.hints.get(code, "")

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
        status, data = response.status_code, json_of(response)
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
            data = json_of(response, any_type=True) if result.ok else None
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
        status, data = response.status_code, json_of(response)
        errorcode = data.get("errorcode") if isinstance(data.get("errorcode"), int) else None
        extra_errors = data.get("additionalErrors")
        message = said(data) or describe_response(response).partition(": ")[2]
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


def json_of(response: requests.Response, *, any_type: bool = False) -> Any:
    """The answer's JSON: a dict (empty when it is not a JSON object) unless `any_type`."""
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    return data if any_type or isinstance(data, dict) else {}


def said(data: dict[str, Any]) -> str:
    """What SFMC said: the first additional error is the specific one (§1.8)."""
    extra = data.get("additionalErrors")
    if isinstance(extra, list) and extra and isinstance(extra[0], dict) and extra[0].get("message"):
        return str(extra[0]["message"])
    for key in ("message", "error_description", "error"):
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    return ""


def key_value(value: Any) -> str | None:
    """A key value as SFMC takes it, or None when there is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def without_nulls(value: Any) -> dict[str, Any]:
    """The mapped object without its null fields (SFMC would store them as empty values)."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else {}


def copies(result: Result, count: int) -> list[Result]:
    return [dataclasses.replace(result) for _ in range(count)]
