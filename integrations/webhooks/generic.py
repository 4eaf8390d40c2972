"""Any JSON webhook: an optional HMAC signature over the body, then JMESPath expressions that pick the payload's
event objects and map each one to a Segment-spec event."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import jmespath.exceptions
import orjson

from integrations.mapping import apply_mapping, check_mapping, compile_expression, evaluate
from integrations.spec import EVENT_TYPES
from integrations.webhooks.base import Incoming, SourceFunction, WebhookError, from_unix, header, hmac_digest, same

FIELDS = (
    "type", "event", "name", "category", "userId", "anonymousId", "previousId", "groupId",
    "properties", "traits", "context", "integrations", "timestamp", "messageId",
)  # fmt: skip
NEEDS = {"track": ("event",), "group": ("groupId",), "alias": ("previousId", "userId")}
SHOWN_FAILURES = 5

# Reads the common shapes: Segment-like objects, `{"event"|"type": …, "data": {…}, "id": …}` envelopes.
DEFAULT_MAPPING: dict[str, Any] = {
    "type": "'track'",
    "event": "event || event_type || type || 'Webhook Received'",
    "userId": "userId || user_id || user.id",
    "anonymousId": "anonymousId || email || user.email",
    "properties": "properties || data || @",
    "timestamp": "timestamp || created_at || occurred_at",
    "messageId": "messageId || id || event_id",
}
SECRET_NEEDS_HEADER = (
    "signature_header: required when a signing secret is set: the name of the header the tool sends its "
    "signature in (e.g. X-Hub-Signature-256)"
)


@dataclass
class GenericConfig:
    """How to read the tool's webhook.

    `events` selects the event objects: `@` is the payload itself (one event, or one per element when the payload
    is a list), `items[]` or `events` one event per element of that list. Every `mapping` expression is evaluated
    against one selected object, not the whole payload (JMESPath cannot reach a parent). Fixed texts are quoted:
    `"'track'"`. A given `mapping` replaces the default one; `type` and `userId` or `anonymousId` are required.
    """

    events: str = "@"
    mapping: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MAPPING))
    signature_header: str = ""  # with a signing secret: the header holding the HMAC (blank: nothing is verified)
    signature_algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    signature_encoding: Literal["hex", "base64"] = "hex"
    signature_prefix: str = ""  # stripped from the header's value before comparing, e.g. GitHub's "sha256="
    signed_content: Literal["body", "timestamp.body"] = "body"  # timestamp.body: HMAC of f"{timestamp}.{body}"
    timestamp_header: str = ""  # for timestamp.body: the header holding the timestamp that was signed

    def check(self) -> list[str]:
        problems = check_mapping(self.events, "events") + check_mapping(self.mapping, "mapping")
        unknown = [key for key in self.mapping if key not in FIELDS]
        problems += [f"mapping.{key}: unknown field, use one of {', '.join(FIELDS)}" for key in unknown]
        if "type" not in self.mapping:
            problems.append("mapping.type: required: an expression, or a fixed type in single quotes like \"'track'\"")
        elif not any(p.startswith("mapping.type:") for p in problems):
            problems += _check_type(self.mapping["type"])
        if "userId" not in self.mapping and "anonymousId" not in self.mapping:
            problems.append("mapping.userId: required (or mapping.anonymousId): every event needs one of them")
        if self.signed_content == "timestamp.body" and not self.timestamp_header:
            problems.append("timestamp_header: required when signed_content is timestamp.body")
        return problems


def _check_type(expression: Any) -> list[str]:
    """Catch the two easy mistakes: a fixed type that is not one, and `track` (a field) meant as `'track'`."""
    if not isinstance(expression, str):
        return [f"mapping.type: must be an expression, not {expression!r}"]
    parsed = compile_expression(expression).parsed
    if parsed["type"] == "literal" and parsed["value"] not in EVENT_TYPES:
        return [f"mapping.type: {parsed['value']!r} is not an event type, use one of {', '.join(EVENT_TYPES)}"]
    if parsed["type"] == "field" and parsed["value"] in EVENT_TYPES:
        return [
            f"mapping.type: {expression!r} reads a field named {expression}; write \"'{expression}'\" for a fixed type"
        ]
    return []


class Generic(SourceFunction):
    """Verify an optional HMAC header, then map each object `events` selects through `mapping`.

    A request is all or nothing: if any selected object maps without a type, an allowed type, an identity or a
    field its type needs, the request is refused with a 400 naming every such object, its index and the empty
    expressions. The tool retries, and once the mapping is fixed each event is stored once. The dedupe key is
    `messageId`; when it maps to nothing, it is a hash of the object's JSON (keys sorted), so a resent identical
    webhook is stored once (and two identical objects are one event). A number as `timestamp` is Unix seconds,
    or milliseconds when over 1e11.
    """

    kind = "generic"
    label = "Any JSON webhook"
    config_class = GenericConfig

    def __init__(self, config: Any, secrets: Any) -> None:
        super().__init__(config, secrets)
        if self.verifies and not self.config.signature_header:
            message = "The source's settings are invalid, fix them in the admin: config." + SECRET_NEEDS_HEADER
            raise WebhookError(503, "source_misconfigured", message)

    @classmethod
    def validate(cls, config: Any, secrets: Any) -> list[str]:
        problems = super().validate(config, secrets)
        if not problems and (secrets or {}).get("signing_secret") and not (config or {}).get("signature_header"):
            problems.append("config." + SECRET_NEEDS_HEADER)
        return problems

    def verify(self, incoming: Incoming) -> None:
        config = self.config
        given = header(incoming, config.signature_header)
        message = incoming.body
        if config.signed_content == "timestamp.body":
            message = header(incoming, config.timestamp_header).encode() + b"." + incoming.body
        digest = hmac_digest(self.secrets.signing_secret, message, config.signature_algorithm)
        if config.signature_prefix and given.startswith(config.signature_prefix):
            given = given[len(config.signature_prefix) :].strip()
        if config.signature_encoding == "hex":
            expected, given = digest.hex(), given.lower()
        else:
            expected = base64.b64encode(digest).decode()
        if not same(expected, given):
            raise WebhookError(
                401,
                "invalid_signature",
                f"The {config.signature_header} header does not match the body signed with the source's signing "
                "secret: check the secret and the signature settings in the admin.",
            )

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        events, failures = [], []
        for index, item in enumerate(self._select(incoming.payload)):
            event, problems = self._map(item)
            events.append(event)
            failures += [f"element {index}: {problem}" for problem in problems]
        if failures:
            more = len(failures) - SHOWN_FAILURES
            raise WebhookError(
                400,
                "mapping_incomplete",
                "The mapping left required fields empty, so nothing was stored: "
                + "; ".join(failures[:SHOWN_FAILURES])
                + (f"; and {more} more" if more > 0 else "")
                + ". Fix the source's mapping (or what the tool sends); the tool's retries are then stored.",
            )
        return events

    def _select(self, payload: Any) -> list[Any]:
        expression = self.config.events
        try:
            selected = evaluate(expression, payload)
        except jmespath.exceptions.JMESPathError as exc:
            raise WebhookError(
                400, "no_events", f"config.events {expression!r} failed on this payload: {exc}."
            ) from None
        items = [item for item in (selected if isinstance(selected, list) else [selected]) if item is not None]
        if not items:
            raise WebhookError(
                400,
                "no_events",
                f"config.events {expression!r} selects nothing in this payload, so there is no event to store: "
                "check the expression against a payload the tool sends.",
            )
        return items

    def _map(self, item: Any) -> tuple[dict[str, Any], list[str]]:
        """The event one selected object maps to, and what keeps it from being an event."""
        event: dict[str, Any] = {}
        problems: list[str] = []
        for key, expression in self.config.mapping.items():
            try:
                value = apply_mapping(expression, item)
            except jmespath.exceptions.JMESPathError as exc:
                problems.append(f"mapping.{key} {expression!r} failed: {exc}")
                continue
            if value is not None:
                event[key] = value
        timestamp = event.get("timestamp")
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
            event["timestamp"] = from_unix(timestamp / 1000 if abs(timestamp) > 1e11 else timestamp)
            if event["timestamp"] is None:
                problems.append(f"timestamp {timestamp} is not a Unix time in seconds or milliseconds")
        message_id = event.get("messageId")
        if isinstance(message_id, int | float) and not isinstance(message_id, bool):
            event["messageId"] = str(message_id)
        elif message_id is None or message_id == "":
            canonical = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            event["messageId"] = "generic-" + hashlib.sha256(canonical).hexdigest()[:32]
        return event, problems or self._missing(event)

    def _missing(self, event: dict[str, Any]) -> list[str]:
        kind = event.get("type")
        if kind is None:
            return [f"no type ({self._why('type')})"]
        if kind not in EVENT_TYPES:
            return [f"type {str(kind)[:40]!r} from mapping.type is not one of {', '.join(EVENT_TYPES)}"]
        problems = [f"no {name} ({self._why(name)})" for name in NEEDS.get(kind, ()) if _blank(event.get(name))]
        if kind != "alias" and _blank(event.get("userId")) and _blank(event.get("anonymousId")):
            problems.append(f"no userId or anonymousId ({self._why('userId')}; {self._why('anonymousId')})")
        return problems

    def _why(self, name: str) -> str:
        if name not in self.config.mapping:
            return f"mapping.{name} is not set"
        return f"mapping.{name} {self.config.mapping[name]!r} found nothing"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
