"""Zendesk Support: a track event becomes a ticket, or an identify creates or updates the end user (config
`action`), one call per event with API-token auth: https://developer.zendesk.com/api-reference/
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import jmespath.exceptions
import orjson
import requests

from integrations.mapping import MappingError, apply_mapping
from integrations.vendors.contract import DeliveryError, Result, Vendor, hints_beside
from integrations.vendors.http import describe_response, retry_after_seconds

PATHS = {"ticket": "/api/v2/tickets", "user": "/api/v2/users/create_or_update"}
TAKES = {"ticket": "track", "user": "identify"}
SUBDOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*")
SUBJECT_LIMIT = 255  # Zendesk documents none: cut a runaway subject rather than risk the ticket
# A comment holds about 65,000 characters: https://support.zendesk.com/hc/en-us/community/posts/4719863289498
BODY_LIMIT = 60_000
TAG_SPACE, TAG_DROP = re.compile(r"\s+"), re.compile(r"[^a-z0-9_\-:]")
# Values outside an enum are left out, not sent: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/
ENUMS = {"priority": {"urgent", "high", "normal", "low"}, "type": {"problem", "incident", "question", "task"}}
# Zendesk's own client waits this long on a 429 without Retry-After:
# https://github.com/zendesk/zendesk_api_client_rb/blob/main/lib/zendesk_api/middleware/request/retry.rb
THROTTLE_WAIT = 10.0
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
SETUP_CODES = {401: "invalid_credentials", 403: "permission_denied", 404: "wrong_subdomain"}  # settings to fix
STATUS_CODES = {**SETUP_CODES, 409: "conflict", 413: "too_large", 422: "invalid_record", 429: "rate_limited"}

# Error code -> what the marketer should do; "http_5xx" covers every server error.
HINTS = hints_beside(__file__, "zendesk.json")

TICKET: dict[str, Any] = {
    "subject": "event",
    "comment": {"body": "properties", "public": False},  # an internal note: the customer is not emailed by default
    "requester": {
        "email": "properties.email || context.traits.email || traits.email",
        "name": "context.traits.name || join(' ', [context.traits.firstName, context.traits.lastName][?@])",
    },
    "tags": ["'cdphub'", "event"],
    "external_id": "messageId",
    "priority": "properties.priority",
    "type": "properties.type",
}
USER: dict[str, Any] = {
    "email": "traits.email || context.traits.email",
    "name": "traits.name || join(' ', [traits.firstName, traits.lastName][?@])",
    "external_id": "userId",
    "phone": "traits.phone",
    "skip_verify_email": True,  # a synced customer gets no "verify your email" message from Zendesk
}


@dataclass
class ZendeskConfig:
    subdomain: str = ""  # acme for acme.zendesk.com
    base_url: str = ""  # instead of subdomain: the sandbox, tests, a proxy
    action: Literal["ticket", "user"] = "ticket"

    @property
    def base(self) -> str:
        return self.base_url.rstrip("/") if self.base_url else f"https://{subdomain_of(self.subdomain)}.zendesk.com"

    def check(self) -> list[str]:
        parts, name = urlsplit(self.base_url), subdomain_of(self.subdomain)
        if bool(name) == bool(self.base_url):
            return ["subdomain: give the Zendesk subdomain (acme for acme.zendesk.com) or base_url, one of the two"]
        if self.base_url and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query):
            return ["base_url: must be an http(s) URL like https://acme.zendesk.com"]
        if self.base_url and "/api/" in parts.path + "/":
            return ["base_url: leave out /api/v2: https://acme.zendesk.com"]
        # Host mapping serves the help center only: https://support.zendesk.com/hc/en-us/articles/4408838571930
        if "." in name:
            return ["subdomain: give the part before .zendesk.com (like acme), not a host-mapped domain"]
        if name and not SUBDOMAIN.fullmatch(name):
            return ["subdomain: must be letters, digits and hyphens, the part before .zendesk.com (like acme)"]
        return []


def subdomain_of(text: str) -> str:
    """The subdomain alone, should the setting be pasted as https://acme.zendesk.com/agent."""
    return text.strip().lower().split("://")[-1].split("/")[0].removesuffix(".zendesk.com")


@dataclass
class ZendeskCredentials:
    email: str  # an agent's or admin's sign-in address: the calls have that user's permissions
    api_token: str

    def check(self) -> list[str]:
        problems = [f"{name}: must not be blank" for name in ("email", "api_token") if not getattr(self, name).strip()]
        if self.email.strip().endswith("/token"):
            problems.append("email: give the email alone, cdphub adds /token itself")
        return problems


def action_of(config: Any) -> str:
    """config.action as a class method sees it: before the config is parsed, so possibly not a dict."""
    return config.get("action", "ticket") if isinstance(config, dict) else "ticket"


def refusal(code: str, message: str) -> DeliveryError:
    """An event that cannot be sent as it is: it fails before any call, with the hint for its code."""
    return DeliveryError(message, code=code, hint=HINTS[code])


def mapping_problems(mapping: Any, action: str) -> list[str]:
    """A Zendesk mapping is the request body: {"ticket": {...}} and/or {"user": {...}} of JMESPath expressions."""
    if not isinstance(mapping, dict) or action not in PATHS:
        return []
    problems = [f"mapping.{k}: unknown (a Zendesk mapping has ticket and user)" for k in mapping if k not in PATHS]
    if not isinstance(mapping.get(action), dict):
        problems.append(f'mapping.{action}: required when config.action is "{action}": an object of field → expression')
    if isinstance(mapping.get("user"), dict) and "role" in mapping["user"]:
        problems.append("mapping.user.role: cdphub never sets a role: an identify could demote an agent or admin")
    return problems


class Zendesk(Vendor):
    key = "zendesk"
    label = "Zendesk"
    config_class = ZendeskConfig
    credentials_class = ZendeskCredentials
    config: ZendeskConfig
    credentials: ZendeskCredentials
    default_mapping: ClassVar[dict[str, Any]] = {"ticket": TICKET, "user": USER}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "ticket_on_track": {
            "label": "Ticket from a track event (Checkout Failed)",
            "filter": {"types": ["track"], "events": ["Checkout Failed"], "condition": None},
            "mapping": {"ticket": TICKET},
        },
        "user_on_identify": {
            "label": 'End user from identify (config.action "user")',
            "filter": {"types": ["identify"], "events": [], "condition": None},
            "mapping": {"user": USER},
        },
    }
    hints = HINTS
    setup_errors = Vendor.setup_errors | set(SETUP_CODES.values())
    # Zendesk remembers an Idempotency-Key for about 2 hours only.
    replay_warning = "a track event sent again more than about 2 hours after its first ticket opens a second ticket"
    # Create or Update User takes 1 call a second per account (and 5 a minute per user); plans allow 10 (Essential)
    # to 700 calls a minute in all: https://developer.zendesk.com/api-reference/introduction/rate-limits/
    # One a second keeps identify inside that, and tickets under a Team plan's 200 a minute.
    default_rate_limit = (1, 1.0)
    default_concurrency = 1  # keeps a user's identifies in order, and two upserts of one email apart (409)

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, credentials, *args, **kwargs)
        if problems := mapping_problems(self.mapping, self.config.action):
            raise DeliveryError(
                "The destination's settings are invalid: " + "; ".join(problems), code="invalid_settings"
            )

    @classmethod
    def validate(cls, config: Any, credentials: Any, mapping: Any = None) -> list[str]:
        problems = mapping_problems(mapping, action_of(config)) if mapping else []
        return super().validate(config, credentials, mapping) + problems

    @classmethod
    def skip_reason(cls, config: dict[str, Any], event: dict[str, Any]) -> str:
        action = action_of(config)
        wanted, kind = TAKES.get(action), event.get("type")
        if wanted is None or kind == wanted:
            return ""  # a bad action is refused when the destination is built
        return f'config.action "{action}" sends {wanted} events to Zendesk, not {kind} events'

    def hint(self, code: str) -> str:
        return self.hints.get(code) or (self.hints["http_5xx"] if code.startswith("http_5") else "")

    def secret_values(self) -> list[str]:
        return [*super().secret_values(), self.basic_token()]  # the header's base64 too, should anyone echo it

    def basic_token(self) -> str:
        # API-token auth: https://developer.zendesk.com/api-reference/introduction/security-and-auth/
        secret = f"{self.credentials.email.strip()}/token:{self.credentials.api_token}"
        return base64.b64encode(secret.encode()).decode()

    def map_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """The request body for the event: the mapping's half for the action, without nulls, in Zendesk's shape."""
        action = self.config.action
        try:
            mapped = apply_mapping(self.mapping[action], event)
        except (jmespath.exceptions.JMESPathError, MappingError) as exc:
            raise refusal("invalid_mapping", f"The mapping failed on this event: {exc}") from None
        fields = without_nulls(mapped) if isinstance(mapped, dict) else {}
        return {action: self.ticket(fields) if action == "ticket" else self.user(fields)}

    def ticket(self, ticket: dict[str, Any]) -> dict[str, Any]:
        if isinstance(ticket.get("subject"), str):
            ticket["subject"] = cut(ticket["subject"], SUBJECT_LIMIT)
        comment = ticket.get("comment")
        if isinstance(comment, dict) and "body" in comment:
            # No description is a 422, so an event without properties takes its subject as the comment:
            # https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/
            comment["body"] = cut(as_text(comment["body"]) or str(ticket.get("subject") or ""), BODY_LIMIT)
        if "tags" in ticket:
            ticket["tags"] = tags_of(ticket["tags"])
        for name, allowed in ENUMS.items():
            value = str(ticket.pop(name, "")).lower()
            if value in allowed:
                ticket[name] = value
        if "requester" in self.mapping["ticket"] and "requester_id" not in ticket:
            requester = ticket.get("requester") if isinstance(ticket.get("requester"), dict) else {}
            email = requester.get("email")
            if not isinstance(email, str) or not email.strip():
                message = "The event has no email for the ticket's requester (mapping.ticket.requester.email is empty)."
                raise refusal("missing_email", message)
            # A new requester needs a name; a known one is left as it is, whatever name is sent:
            # https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/
            ticket["requester"] = {**requester, "name": requester.get("name") or email.split("@")[0]}
        return ticket

    def user(self, user: dict[str, Any]) -> dict[str, Any]:
        # Zendesk needs a name only to create a user, and "" would blank a known user's:
        # https://developer.zendesk.com/api-reference/ticketing/users/users/#create-or-update-user
        if not user.get("name"):
            user.pop("name", None)
        if not any(str(user.get(key) or "").strip() for key in ("email", "external_id")):
            message = "The identify has no email and no external_id (userId) to find or create the Zendesk user by."
            raise refusal("missing_identity", message)
        return user

    def idempotency_key(self, event: dict[str, Any]) -> str:
        """The same for every send of one event through one ticket mapping (a retry, a replay), so that Zendesk
        answers with the first ticket for about 2 hours instead of making another:
        https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency"""
        message_id = event.get("messageId") or orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
        mapping = orjson.dumps(self.mapping["ticket"], option=orjson.OPT_SORT_KEYS)
        return "cdphub-" + hashlib.sha256(mapping + b"\n" + str(message_id).encode()).hexdigest()[:40]

    def request_for(self, event: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL, headers and body of the event's call; DeliveryError when it cannot be sent."""
        action = self.config.action
        if reason := self.skip_reason({"action": action}, event):
            raise refusal("not_for_vendor", f"The event is not sent: {reason}.")
        body = self.map_event(event)
        headers = {"Authorization": f"Basic {self.basic_token()}", **JSON_HEADERS}
        if action == "ticket":
            headers["Idempotency-Key"] = self.idempotency_key(event)
        return self.config.base + PATHS[action], headers, body

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        return [self.deliver_one(event) for event in events]

    def deliver_one(self, event: dict[str, Any]) -> Result:
        try:
            url, headers, body = self.request_for(event)
        except DeliveryError as error:
            return error.result([])
        [result] = self.send([event], lambda: self.http.request("POST", url, data=orjson.dumps(body), headers=headers))
        result.hint = result.hint or self.hint(result.error_code)  # timeouts and connection errors too
        return result

    def classify(self, response: requests.Response) -> Result:
        status, data = response.status_code, json_of(response)
        if 200 <= status < 300:
            return Result("delivered", status_code=status)
        code = STATUS_CODES.get(status) or (f"http_{status}" if status >= 500 or status == 408 else "bad_request")
        if data.get("error") == "IdempotentRequestError":
            code = "idempotency_conflict"
        elif 300 <= status < 400:
            code = "wrong_subdomain"  # a host-mapped domain redirects to the zendesk.com one, which takes the calls
        text = said(data) or describe_response(response).partition(": ")[2]
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        # A 409 is two writes of one record at once (one email upserted twice): gone on a later try.
        retryable = code in ("conflict", "http_408") or status >= 500
        return Result(
            "throttled" if status == 429 else "retry" if retryable else "failed",
            status_code=status,
            error_code=code,
            error_message=f"HTTP {status}" + (f": {text}" if text else ""),
            hint=self.hint(code),
            retry_after=(THROTTLE_WAIT if wait is None else wait) if status == 429 else wait if retryable else None,
        )

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        url, headers, body = self.request_for(event)
        note = "Basic auth with the credentials' email and API token. " + (
            "The Idempotency-Key makes a retry or replay within about 2 hours return the first ticket, not a new one."
            if self.config.action == "ticket"
            else "Creates the end user, or updates the one with this email or external_id."
        )
        return [{"method": "POST", "url": url, "headers": self.masked_headers(headers), "body": body, "note": note}]


def said(data: dict[str, Any]) -> str:
    """Zendesk's words in each of its error shapes: {"error": {"title", "message"}} (no such help desk), a 422's
    `details` (field → [{"description"}]), {"error", "message" | "description"}, or a bare {"error"}."""
    error, details = data.get("error"), data.get("details")
    if isinstance(error, dict):
        return ": ".join(str(error[key]) for key in ("title", "message") if error.get(key))
    found = [
        str(item.get("description") or f"{name}: {item.get('error') or 'invalid'}")
        for name, items in (details.items() if isinstance(details, dict) else [])
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    ]
    texts = [data.get(key) for key in ("message", "error_description", "description", "error")]
    return "; ".join(found) or next((t for t in texts if isinstance(t, str) and t), "")


def json_of(response: requests.Response) -> dict[str, Any]:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}  # a 429 or a proxy's 5xx can be plain text or HTML
    return data if isinstance(data, dict) else {}


def without_nulls(value: Any) -> Any:
    """The mapped value without nulls: Zendesk would clear a known user's field on a null."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


def as_text(value: Any) -> str:
    """A comment body: text as it is, an object as "key: value" lines (values other than text as JSON)."""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {v if isinstance(v, str) else orjson.dumps(v).decode()}" for k, v in value.items())
    return value if isinstance(value, str) else "" if value in (None, []) else orjson.dumps(value).decode()


def tags_of(value: Any) -> list[str]:
    """Tags as Zendesk keeps them: lower case, spaces as underscores, no other punctuation, no repeats."""
    items = value if isinstance(value, list) else [value]
    texts = [str(i) for i in items if isinstance(i, str | int | float) and not isinstance(i, bool)]
    tags = [TAG_DROP.sub("", TAG_SPACE.sub("_", text.strip().lower())) for text in texts]
    return list(dict.fromkeys(tag for tag in tags if tag))


def cut(text: str, limit: int) -> str:
    marker = " … (cut by cdphub)"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker
