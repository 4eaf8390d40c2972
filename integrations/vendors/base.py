"""What every destination vendor shares: typed settings, one HTTP client with a recorded, redacted log, results."""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import ipaddress
import re
import socket
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import orjson
import requests
from django.conf import settings

from integrations.crypto import CANNOT_DECRYPT, MASK, Undecryptable
from integrations.mapping import apply_mapping, check_mapping

USER_AGENT = "cdphub/0.1 (+https://github.com/cdphub)"
BODY_LIMIT = 4096  # characters of each recorded body
REDACTED = "[REDACTED]"
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
SECRET_KEYS = re.compile(r"secret|token|password|passwd|authorization|api[_-]?key|write[_-]?key|signature", re.I)

Outcome = Literal["delivered", "retry", "throttled", "failed"]


@dataclass
class Result:
    """What happened to one event: the delivery task turns it into Delivery and Attempt rows.

    "throttled" means the vendor turned the call away for a rate limit, a concurrency limit or a quota: the
    delivery waits `retry_after` seconds without counting as an attempt, and the whole destination waits with
    it. `defer` (a daily quota) lets it wait past the retry deadline, for the quota's reset.
    """

    outcome: Outcome
    status_code: int | None = None
    error_code: str = ""
    error_message: str = ""
    hint: str = ""
    retry_after: float | None = None
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    defer: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "delivered"


class DeliveryError(Exception):
    """Raised inside a vendor to end a delivery; `retryable` decides between retry and failed, `throttled`
    (a rate limit or quota) makes it wait without counting as an attempt."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str = "",
        status_code: int | None = None,
        throttled: bool = False,
        defer: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.hint = hint
        self.status_code = status_code
        self.throttled = throttled
        self.defer = defer

    @property
    def outcome(self) -> Outcome:
        return "throttled" if self.throttled else "retry" if self.retryable else "failed"

    def result(self, exchanges: list[dict[str, Any]]) -> Result:
        return Result(
            self.outcome,
            status_code=self.status_code,
            error_code=self.code,
            error_message=self.message,
            hint=self.hint,
            retry_after=self.retry_after,
            exchanges=exchanges,
            defer=self.defer,
        )


# Typed settings --------------------------------------------------------------------------------------


def parse_settings(cls: type, data: Any, where: str) -> tuple[Any, list[str]]:
    """Build dataclass `cls` from a JSON object; return it (or None) and one message per bad field."""
    if data is None:
        data = {}
    if isinstance(data, Undecryptable):  # stored with a key that is no longer configured
        return None, [f"{where}: {CANNOT_DECRYPT}"]
    if not isinstance(data, dict):
        return None, [f"{where}: must be an object"]
    problems: list[str] = []
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems += [f"{where}.{key}: unknown setting" for key in data if key not in fields]
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data or data[name] is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{where}.{name}: required")
            continue
        value = data[name]
        if not _matches(value, hints[name]):
            problems.append(f"{where}.{name}: must be {_describe(hints[name])}{_not(value, hints[name])}")
            continue
        values[name] = value
    if problems:
        return None, problems
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if check:
        problems += [f"{where}.{p}" for p in check()]
    return (None if problems else instance), problems


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        _, value_type = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(isinstance(k, str) and _matches(v, value_type) for k, v in value.items())
    if origin is list:
        (item_type,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item_type) for v in value)
    if hint is Any:
        return True
    return isinstance(value, hint)


KINDS = {str: "string", bool: "boolean", int: "number", float: "number", dict: "object", list: "list"}


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in (dict, list) and typing.get_args(hint) and typing.get_args(hint)[-1] in KINDS:
        return ("an object of " if origin is dict else "a list of ") + KINDS[typing.get_args(hint)[-1]] + "s"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(
        hint, "an object" if origin is dict else "a list" if origin is list else str(hint)
    )


def _not(value: Any, hint: Any) -> str:
    """Say what the value is instead, in JSON words: ", not 'GET'", ", not a string"."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return f", not {value!r}"
    is_union = origin in (typing.Union, types.UnionType)
    origins = {typing.get_origin(a) for a in typing.get_args(hint)} if is_union else {origin}
    if (dict in origins and isinstance(value, dict)) or (list in origins and isinstance(value, list)):
        return ""  # the right container holding a wrong item: the description already says what items must be
    kind = KINDS.get(type(value), type(value).__name__)
    return f", not {'an' if kind[0] in 'aeiou' else 'a'} {kind}"


# HTTP ------------------------------------------------------------------------------------------------


def check_url(url: str) -> None:
    """Refuse URLs that are not http(s) or that resolve to private, loopback or link-local addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"{url[:200]!r} is not an http(s) URL.", code="invalid_url")
    if settings.ALLOW_PRIVATE_URLS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        # EAI_AGAIN is a resolver outage; anything else (no such name) is likely a typo in the host.
        temporary = getattr(exc, "errno", None) == socket.EAI_AGAIN
        raise DeliveryError(
            f"The host {parts.hostname} cannot be resolved.",
            code="dns_unavailable" if temporary else "dns_error",
            retryable=True,
        ) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise DeliveryError(
                f"{parts.hostname} resolves to a private address ({address}); cdphub does not send there.",
                code="private_address",
                hint="Use a public URL, or set CDPHUB_ALLOW_PRIVATE_URLS=1 if this hub may reach internal hosts.",
            )


def retry_after_seconds(value: str | None) -> float | None:
    """Read Retry-After as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """One session, a timeout on every call, the private-address guard, and a redacted exchange log.

    `gate`, when the engine sets it, is called before each `extra` call (a token, a lookup: any call beyond the
    one per batch the engine already counted) and waits for the destination's rate limit.
    """

    def __init__(self, timeout: float, secrets: list[str], secret_headers: set[str] | None = None) -> None:
        self.timeout = timeout
        self.configured = {s for s in secrets if isinstance(s, str) and len(s) >= 4}
        self.issued: list[str] = []
        self.secrets = sorted(self.configured, key=len, reverse=True)
        self.secret_headers = SECRET_HEADERS | {h.lower() for h in (secret_headers or set())}
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # requests re-reads the proxy environment (and ~/.netrc) on every call, which cost more CPU than the
        # call itself on loopback; read the proxies once per host instead (HTTPS_PROXY / NO_PROXY still apply).
        self.session.trust_env = False
        self._proxies: dict[str, dict[str, str]] = {}
        self.exchanges: list[dict[str, Any]] = []
        self.gate: typing.Callable[[], None] | None = None

    def add_secret(self, value: str) -> None:
        """Redact `value` too from now on (an access token the vendor issued)."""
        if isinstance(value, str) and len(value) >= 4 and value not in self.issued:
            self.issued = [*self.issued, value][-16:]  # a token lives minutes: the last few are enough
            self.secrets = sorted({*self.configured, *self.issued}, key=len, reverse=True)

    def take_exchanges(self) -> list[dict[str, Any]]:
        taken, self.exchanges = self.exchanges, []
        return taken

    def request(self, method: str, url: str, *, extra: bool = False, **kwargs: Any) -> requests.Response:
        check_url(url)
        if extra and self.gate is not None:
            self.gate()
        started = time.monotonic()
        request = requests.Request(method, url, **kwargs)
        prepared = self.session.prepare_request(request)
        record: dict[str, Any] = {
            "request": {
                "method": method,
                "url": self.redact_text(url),
                "headers": self.redact_headers(prepared.headers),
                "body": self.redact_body(prepared.body),
            }
        }
        self.exchanges.append(record)
        try:
            response = self.session.send(
                prepared, timeout=self.timeout, allow_redirects=False, proxies=self.proxies_for(prepared.url)
            )
        except requests.Timeout:
            record["error"] = f"No answer within {self.timeout:g} s"
            raise DeliveryError(record["error"], code="timeout", retryable=True) from None
        except requests.ConnectionError as exc:
            record["error"] = f"Connection failed: {self.redact_text(_root_cause(exc))}"
            raise DeliveryError(record["error"], code="connection_error", retryable=True) from None
        finally:
            record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        record["response"] = {
            "status": response.status_code,
            "headers": self.redact_headers(response.headers),
            "body": self.redact_body(response.content),
        }
        return response

    def proxies_for(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = requests.utils.get_environ_proxies(url)
        return self._proxies[origin]

    def redact_text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_headers(self, headers: Any) -> dict[str, str]:
        return {
            name: REDACTED if name.lower() in self.secret_headers else self.redact_text(str(value))
            for name, value in headers.items()
        }

    def redact_body(self, body: bytes | str | None) -> str:
        if body is None:
            return ""
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        with contextlib.suppress(orjson.JSONDecodeError):
            text = orjson.dumps(_redact_keys(orjson.loads(text))).decode()
        text = self.redact_text(text)
        return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + f"… ({len(text) - BODY_LIMIT} more characters)"


def _redact_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_KEYS.search(k) and isinstance(v, str | int) else _redact_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_keys(v) for v in value]
    return value


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return str(exc)[:300]


def describe_response(response: requests.Response) -> str:
    """The receiver's own words: a JSON message/error field, else the start of the body."""
    text = response.text[:2000]
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error_description", "error", "errors", "detail"):
            if data.get(key):
                text = data[key] if isinstance(data[key], str) else orjson.dumps(data[key]).decode()
                break
    text = " ".join(text.split())[:300]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


# Vendors ---------------------------------------------------------------------------------------------


@dataclass
class NoCredentials:
    pass


class Vendor:
    """A destination vendor: built with its destination's settings, it turns events into HTTP calls."""

    key: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type]
    credentials_class: ClassVar[type] = NoCredentials
    default_mapping: ClassVar[dict[str, Any]] = {}
    max_batch: ClassVar[int] = 1  # events one deliver() call may take
    calls_per_batch: ClassVar[int] = 1  # HTTP calls one deliver() may make at most, token calls aside
    # Error codes that mean the destination's settings are wrong: every delivery fails until someone fixes
    # them, so the admin shows the destination as misconfigured (with the hint) rather than as failing.
    setup_errors: ClassVar[frozenset[str]] = frozenset({"invalid_settings", "invalid_url", "private_address"})
    default_rate_limit: ClassVar[tuple[int, float]] = (50, 1.0)  # requests per seconds
    default_concurrency: ClassVar[int] = 4
    # Sending an event again has a consequence beyond the data (an SFMC journey admits the contact once more):
    # replays ask the marketer to confirm.
    reenters_contacts: ClassVar[bool] = False
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # name -> {"label", "filter", "mapping"}: admin form buttons

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        mapping: Any = None,
        *,
        timeout: float = 10.0,
        destination_id: int | None = None,
    ) -> None:
        self.destination_id = destination_id  # the owner of shared state such as an OAuth token
        self.config, problems = parse_settings(self.config_class, config, "config")
        self.credentials, more = parse_settings(self.credentials_class, credentials, "credentials")
        if problems or more:
            raise DeliveryError(
                "The destination's settings are invalid: " + "; ".join(problems + more), code="invalid_settings"
            )
        self.mapping = mapping if mapping else self.default_mapping
        self.http = HttpClient(timeout, self.secret_values(), self.secret_header_names())

    @classmethod
    def validate(cls, config: Any, credentials: Any, mapping: Any = None) -> list[str]:
        """Return one message per bad field (empty when the settings are good)."""
        problems = parse_settings(cls.config_class, config, "config")[1]
        problems += parse_settings(cls.credentials_class, credentials, "credentials")[1]
        if mapping:
            problems += check_mapping(mapping) if isinstance(mapping, dict) else ["mapping: must be an object"]
        return problems

    @classmethod
    def skip_reason(cls, config: dict[str, Any], event: dict[str, Any]) -> str:
        """Why this vendor has nothing to do with the event (it is then filtered with this reason), or ""."""
        return ""

    def secret_values(self) -> list[str]:
        return [v for v in _leaves(dataclasses.asdict(self.credentials)) if isinstance(v, str)]

    def secret_header_names(self) -> set[str]:
        return set()

    def map_event(self, event: dict[str, Any]) -> Any:
        return apply_mapping(self.mapping, event) if self.mapping else event

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        """Send the events (at most `max_batch`); return one Result per event, in order."""
        raise NotImplementedError

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The request(s) deliver() would make for this one event, without any I/O (the Event Tester's dry run).

        Each is {"method", "url", "headers", "body", "note"}, credentials masked; raise DeliveryError when the
        event could not be sent. This default shows the mapped payload; vendors show their real requests.
        """
        return [{"method": "POST", "url": "", "headers": {}, "body": self.map_event(event), "note": ""}]

    def masked_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """Headers as a preview shows them: secret ones masked, credentials inside other values too."""
        return {
            name: MASK if name.lower() in self.http.secret_headers else self.http.redact_text(str(value))
            for name, value in headers.items()
        }

    def classify(self, response: requests.Response) -> Result:
        """Default HTTP classes: 2xx delivered; 429 throttled; 408 and 5xx retried; any other status failed."""
        status = response.status_code
        if 200 <= status < 300:
            return Result("delivered", status_code=status)
        retryable = status == 408 or status >= 500
        message = describe_response(response)
        if 300 <= status < 400:
            message += " (redirects are not followed: use the final URL)"
        return Result(
            "throttled" if status == 429 else "retry" if retryable else "failed",
            status_code=status,
            error_code=f"http_{status}",
            error_message=message,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def send(self, events: list[dict[str, Any]], call: typing.Callable[[], requests.Response]) -> list[Result]:
        """Run one HTTP call for `events` and give each the same classified Result."""
        try:
            result = self.classify(call())
        except DeliveryError as exc:
            result = exc.result([])
        result.error_message = self.http.redact_text(result.error_message)  # receivers may echo a credential
        result.exchanges = self.http.take_exchanges()
        return [dataclasses.replace(result) for _ in events]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]
