"""Run test: one event (or, for a source function, one webhook body) through a function's real code, with
`fetch` either sent or recorded and not sent, and everything it did shown: the value or the error, the console,
each fetch exchange, the events a source function emits. The admin's function page and the management API
both call run_test(); nothing here writes a row.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from integrations.functions.declaration import secret_values, settings_for
from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import HANDLER_OF_TYPE, FunctionError, Sandbox

OUTCOMES = {
    "function_retry": "would be retried",
    "function_timeout": "would be retried",
    "event_not_supported": "would be filtered",
    "dropped": "would be dropped",
    "message_rejected": "would be rejected",
}


@dataclass
class TestRun:
    handler: str
    outcome: str  # "returned", "unsupported", or what the error would do: "would be retried" …
    value: Any = None
    error: FunctionError | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    emitted: list[dict[str, Any]] = field(default_factory=list)  # a source function's events, as Segment.* gave them
    duration_ms: float = 0.0
    sent: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None and self.outcome == "returned"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["error"] = None if self.error is None else {**asdict(self.error), "text": self.error.text}
        return data


def run_test(
    function: Any,
    *,
    event: dict[str, Any] | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    url: str = "https://hub.invalid/v1/webhooks/test",
    settings: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    send: bool = False,
    code: str | None = None,
) -> TestRun:
    """Run `function` (a Function; `code` overrides its saved code, to test an edit before saving) once.

    A destination or insert function gets `event`; a source function gets `body` (the raw webhook body) with
    `headers` at `url`. Settings are plain and secret values as a destination or source would give them.
    A fresh context each time: a test never sees (or leaves) a warm context's module state.
    """
    source = code if code is not None else function.code
    merged = settings_for(function.settings, settings or {}, secrets or {})
    fetcher = Fetcher(secret_values(secrets or {}), send=send)
    if function.kind == "source":
        handler = "onRequest"
        request = {
            "url": url,
            "method": "POST",
            "headers": headers or {"content-type": "application/json"},
            "body": body or "",
        }
        args: list[Any] = [request, merged]
    else:
        event = dict(event or {})
        event.setdefault("messageId", f"test-{uuid.uuid4()}")
        handler = HANDLER_OF_TYPE.get(str(event.get("type", "")), "")
        args = [event, merged]
    sandbox = Sandbox(source)
    try:
        if function.kind == "destination" and sandbox.has("onBatch"):  # as the vendor delivers it: a batch of one
            handler, args = "onBatch", [[event], merged]
        if not handler:
            return TestRun(
                handler="",
                outcome="unsupported",
                sent=send,
                error=FunctionError(
                    "EventNotSupported",
                    "event_not_supported",
                    f"{event.get('type')!r} is not an event type with a handler",
                ),
            )
        run = sandbox.invoke(handler, args, fetcher)
    finally:
        sandbox.close()
    if run.missing:
        outcome = "unsupported"
        error = FunctionError(
            "EventNotSupported",
            "event_not_supported",
            f"the function has no {handler} handler: the event would be filtered",
        )
    else:
        error = run.error
        outcome = "returned" if error is None else OUTCOMES.get(error.code, "would fail")
    return TestRun(
        handler=handler,
        outcome=outcome,
        value=run.value,
        error=error,
        logs=run.logs,
        exchanges=run.exchanges,
        emitted=run.emitted,
        duration_ms=run.duration_ms,
        sent=send,
    )
