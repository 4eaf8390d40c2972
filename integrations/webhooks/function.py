"""A source function in JavaScript: the team's own `onRequest(request, settings)` (Segment's contract) turns a
tool's webhook into events with `Segment.identify/track/page/screen/group/alias`, run in V8 (integrations/functions).

Config: `function` (the slug of a source function), `settings` (its plain settings) and, to verify requests,
`signature_header` (an HMAC-SHA256 of the body, hex, an optional "sha256=" prefix) with `signing_secret` among
the source's secret settings. The events go through the Tracking API's ingest path like any other source's.
Unlike Segment's runtime, the handler may return a response for the tool, `{status, headers, body}` (a
verification challenge, say), and an event without a messageId gets one derived from the request, so a
webhook the tool sends again is stored once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from integrations.functions.declaration import FunctionCode, secret_values, settings_for, values_problems
from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import Invocation, sandbox_for
from integrations.webhooks.base import Incoming, SourceFunction, WebhookError, header, hmac_digest, same

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
BAD_VALUE = re.compile(r"[\r\n\x00]")
HOP_BY_HOP = {"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"}
EMITTED_TYPES = ("identify", "track", "page", "screen", "group", "alias")
RETRY_AFTER = "60"


@dataclass
class FunctionSourceConfig:
    function: str
    settings: dict[str, Any] = field(default_factory=dict)
    signature_header: str = ""  # with a signing_secret: the header holding the body's HMAC-SHA256 (hex)


class JavaScriptSource(SourceFunction):
    kind = "function"
    label = "Source function (JavaScript)"
    config_class = FunctionSourceConfig
    accepts_any_body = True  # form-encoded or text bodies reach the code as they are
    answers_empty = True  # a webhook the code chose to ignore is not an error the tool should retry

    def __init__(self, config: Any, secrets: Any, function: FunctionCode | None = None, owner: str = "") -> None:
        secrets = dict(secrets) if isinstance(secrets, dict) else secrets
        signing_secret = secrets.pop("signing_secret", "") if isinstance(secrets, dict) else ""
        super().__init__(config, {"signing_secret": signing_secret} if signing_secret else {})
        self.values = secrets if isinstance(secrets, dict) else {}
        self.function = function
        if function is None or function.slug != self.config.function:
            raise WebhookError(503, "source_misconfigured", f"There is no source function {self.config.function!r}.")
        problems = values_problems(
            self.function.settings, self.config.settings, self.values, "config.settings", "settings"
        )
        if problems:
            raise WebhookError(503, "source_misconfigured", "The source's settings are invalid: " + "; ".join(problems))
        self.owner = owner or f"source-test:{id(self)}"
        self.response: dict[str, Any] | None = None
        self.run: Invocation | None = None

    @classmethod
    def for_source(cls, source: Any) -> JavaScriptSource:
        return cls(source.config, source.settings, source.function_code(), owner=f"source:{source.pk}")

    @classmethod
    def validate(cls, config: Any, secrets: Any) -> list[str]:
        values = dict(secrets) if isinstance(secrets, dict) else secrets
        if isinstance(values, dict):
            values.pop("signing_secret", None)
        problems = super().validate(config, {})
        if problems or not isinstance(config, dict):
            return problems
        if isinstance(secrets, dict) and secrets.get("signing_secret") and not config.get("signature_header"):
            problems.append("config.signature_header: required when a signing secret is set (e.g. X-Signature)")
        return problems

    @staticmethod
    def settings_problems(function: FunctionCode | None, config: Any, secrets: Any) -> list[str]:
        """The values against the function's declaration (Source.clean, which can read the function)."""
        if function is None:
            name = config.get("function") if isinstance(config, dict) else None
            return [f"config.function: there is no source function {name!r}"]
        values = {k: v for k, v in secrets.items() if k != "signing_secret"} if isinstance(secrets, dict) else secrets
        plain = config.get("settings") if isinstance(config, dict) else None
        return values_problems(function.settings, plain, values, "config.settings", "settings")

    def verify(self, incoming: Incoming) -> None:
        name = self.config.signature_header or "X-Signature"
        given = header(incoming, name).removeprefix("sha256=").strip().lower()
        if not same(hmac_digest(self.secrets.signing_secret, incoming.body).hex(), given):
            raise WebhookError(
                401,
                "invalid_signature",
                f"The {name} header does not match the body signed with the source's signing secret.",
            )

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        secrets = {k: v for k, v in self.values.items() if isinstance(v, str)}
        fetcher = Fetcher(secret_values(secrets))
        settings = settings_for(self.function.settings, self.config.settings, self.values)
        request = {
            "url": incoming.url or "https://hub.invalid/v1/webhooks/",
            "method": "POST",
            "headers": {k.lower(): v for k, v in incoming.headers.items()},
            "body": incoming.body.decode(errors="replace"),
        }
        run = sandbox_for(self.owner, self.function.code, settings).invoke("onRequest", [request, settings], fetcher)
        self.run = run
        if run.missing:
            raise WebhookError(503, "source_misconfigured", "The source function has no onRequest handler.")
        if run.error is not None:
            raise refusal(run)
        self.response = custom_response(run.value)
        digest = hashlib.sha256(incoming.body).hexdigest()[:24]
        events = []
        for index, item in enumerate(e for e in run.emitted if e.get("type") in EMITTED_TYPES):
            item.setdefault("messageId", f"fn-{digest}-{index}")
            events.append(item)
        return events


def refusal(run: Invocation) -> WebhookError:
    """The answer for a thrown error: a RetryError or a time-out asks the tool to send again (503, Retry-After),
    a rejected payload is a 400, anything else a 422 with the message and the line."""
    error = run.error
    assert error is not None
    logs = "; ".join(line["message"] for line in run.logs)[-300:]
    text = error.text + (f" (console: {logs})" if logs else "")
    if error.code in ("function_retry", "function_timeout"):
        return WebhookError(503, error.code, text)
    if error.code in ("message_rejected", "event_not_supported"):
        return WebhookError(400, error.code, text)
    return WebhookError(422, error.code if error.code != "function_error" else "function_error", text)


def custom_response(value: Any) -> dict[str, Any] | None:
    """The handler's own answer for the tool, when it returned {status, headers?, body?} (status 200-599)."""
    if not isinstance(value, dict) or not isinstance(value.get("status"), int) or not 200 <= value["status"] <= 599:
        return None
    headers = value.get("headers") if isinstance(value.get("headers"), dict) else {}
    body = value.get("body", "")
    if not isinstance(body, str):
        body = orjson.dumps(body).decode()
        headers = {"Content-Type": "application/json", **headers}
    kept = {
        str(k): str(v)
        for k, v in headers.items()
        if HEADER_NAME.fullmatch(str(k)) and str(k).lower() not in HOP_BY_HOP and not BAD_VALUE.search(str(v))
    }
    return {"status": value["status"], "headers": kept, "body": body}
