"""The one HTTP client of every destination vendor: one session, a timeout and a User-Agent on every call, the
private-address guard, and a recorded log of each exchange with secrets redacted and bodies truncated."""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import re
import socket
import time
import typing
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from django.conf import settings

from integrations.vendors.results import DeliveryError

USER_AGENT = "cdphub/0.1 (+https://github.com/cdphub)"
BODY_LIMIT = 4096  # characters of each recorded body
REDACTED = "[REDACTED]"
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
SECRET_KEYS = re.compile(r"secret|token|password|passwd|authorization|api[_-]?key|write[_-]?key|signature", re.I)
# The real vendor hosts the sandbox fakes, and the path it serves each under (integrations/sandbox/).
SANDBOXED_HOSTS = [
    (re.compile(r"[a-z0-9-]+\.auth\.marketingcloudapis\.com"), "/sfmc/auth"),
    (re.compile(r"[a-z0-9-]+\.rest\.marketingcloudapis\.com"), "/sfmc/rest"),
    (re.compile(r"[0-9]{3}-[a-z]{3}-[0-9]{3}\.mktorest\.com"), "/marketo"),
    (re.compile(r"[a-z0-9-]+\.zendesk\.com"), "/zendesk"),
    (re.compile(r"rest\.[a-z0-9-]+\.braze\.(?:com|eu)"), "/braze"),
]


def sandboxed(url: str) -> str:
    """The sandbox's URL for a call to a vendor host it fakes when CDPHUB_SANDBOX_URL is set, else `url` itself."""
    if not settings.SANDBOX_URL:
        return url
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for pattern, base in SANDBOXED_HOSTS:
        if pattern.fullmatch(host):
            return settings.SANDBOX_URL + base + parts.path + (f"?{parts.query}" if parts.query else "")
    return url


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
        """Send one request and record it as sent: to the sandbox, when it fakes the vendor's host."""
        routed = sandboxed(url)
        if routed == url:
            check_url(url)  # the operator's own sandbox needs no guard: the guard is for destinations' URLs
        url = routed
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
