"""A destination function: the team's own JavaScript (Segment's contract) as a destination, run in V8.

Config: `function` (the slug of a destination function), `settings` (its plain settings) and `batch_size` (events
an `onBatch` call takes); credentials: its sensitive settings, by name. The code's handlers get
`(event, settings)`; what they throw decides the delivery as Segment decides it: RetryError and a time-out are
retried, EventNotSupported (or no handler) filters the event, InvalidEventPayload and ValidationError reject it,
anything else fails it with the message and the line. Each `fetch` is an exchange on the attempt, and the console
output is kept beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from integrations.functions.declaration import FunctionCode, secret_values, settings_for, values_problems
from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import HANDLER_OF_TYPE, FunctionError, Invocation, Sandbox, sandbox_for
from integrations.vendors.contract import DeliveryError, Result, Vendor

RETRIED = {"function_retry", "function_timeout"}
FILTERED = {"event_not_supported", "dropped"}
HINTS = {
    "function_error": "The function threw an error: open it, use Run test with this event, and fix the line shown.",
    "function_timeout": "The function ran past its time limit: await every fetch, and avoid loops over large data.",
    "memory_limit": "The function used too much memory: avoid building large arrays or strings.",
    "never_settled": "The handler returned a promise that never settles: await each fetch and return.",
    "message_rejected": "The function rejected the event (InvalidEventPayload / ValidationError): check the event "
    "has what the function needs.",
    "private_address": "The function fetched a private address; set CDPHUB_ALLOW_PRIVATE_URLS=1 if it may.",
    "forbidden": "The function used what functions cannot (require, process, timers): use the globals instead.",
    "console_limit": "The function logged more than 1 MB in one invocation: log a summary, not whole payloads.",
    "function_not_found": "The destination names a function that does not exist: choose one in its settings.",
    "syntax_error": "The function's code does not load: open it and fix the line shown.",
}


@dataclass
class FunctionConfig:
    function: str
    settings: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 20

    def check(self) -> list[str]:
        return [] if 1 <= self.batch_size <= 400 else ["batch_size: must be between 1 and 400"]


class FunctionVendor(Vendor):
    key = "function"
    label = "Destination function (JavaScript)"
    config_class = FunctionConfig
    default_rate_limit = (100, 1.0)
    default_concurrency = 4
    hints = HINTS
    setup_errors = Vendor.setup_errors | {"function_not_found", "syntax_error", "forbidden"}

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any], mapping: Any = None, **kwargs: Any) -> None:
        secrets = credentials if isinstance(credentials, dict) else {}
        super().__init__(config, {}, mapping, **kwargs)
        self.secrets = secrets
        self.function = self.state.function(self.config.function, "destination")
        if self.function is None:
            raise DeliveryError(
                f"There is no destination function {self.config.function!r}.",
                code="function_not_found",
                hint=HINTS["function_not_found"],
            )
        problems = values_problems(
            self.function.settings, self.config.settings, secrets, "config.settings", "credentials"
        )
        if problems:
            raise DeliveryError(
                "The destination's settings are invalid: " + "; ".join(problems), code="invalid_settings"
            )
        self.settings = settings_for(self.function.settings, self.config.settings, secrets)
        self.fetcher = Fetcher(secret_values(secrets), kwargs.get("timeout", 10.0))
        self.http = self.fetcher.http
        self.owner = f"destination:{getattr(self.state, 'destination_id', None) or id(self)}"
        # Segment calls onBatch for a batch of one too, so a function may define onBatch alone (segment-docs#1734).
        self.batches = self.sandbox().has("onBatch")
        self.max_batch = self.config.batch_size if self.batches else 1

    @classmethod
    def validate(cls, config: Any, credentials: Any, mapping: Any = None) -> list[str]:
        """The shape of the settings; their values against the function's declaration are checked where the
        function can be read (Destination.clean)."""
        problems = super().validate(config, {}, mapping)
        if credentials is not None and not isinstance(credentials, dict):
            problems.append("credentials: must be an object of the function's sensitive settings")
        return problems

    @staticmethod
    def settings_problems(function: FunctionCode | None, config: Any, credentials: Any) -> list[str]:
        if function is None:
            name = config.get("function") if isinstance(config, dict) else None
            return [f"config.function: there is no destination function {name!r}"]
        plain = config.get("settings") if isinstance(config, dict) else None
        return values_problems(function.settings, plain, credentials, "config.settings", "credentials")

    def secret_values(self) -> list[str]:
        return secret_values(getattr(self, "secrets", {}))

    def sandbox(self) -> Any:
        return sandbox_for(self.owner, self.function.code, self.settings)

    def invoke(self, handler: str, args: list[Any], fetcher: Fetcher | None = None) -> Invocation:
        return self.sandbox().invoke(handler, args, fetcher or self.fetcher)

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        if self.batches:
            return self.deliver_batch(events)
        return [self.deliver_one(event) for event in events]

    def deliver_one(self, event: dict[str, Any]) -> Result:
        handler = HANDLER_OF_TYPE.get(event.get("type", ""), "")
        if not handler:
            return Result(
                "filtered",
                error_code="event_not_supported",
                error_message=f"a {event.get('type')!r} event has no handler",
            )
        return result_of(self.invoke(handler, [event, self.settings]), handler)

    def deliver_batch(self, events: list[dict[str, Any]]) -> list[Result]:
        """onBatch(events, settings): a throw decides for all; a returned list [{status, errormessage}] decides
        per event, in order (2xx delivered, 408/429/5xx retried, other statuses failed)."""
        run = self.invoke("onBatch", [events, self.settings])
        whole = result_of(run, "onBatch")
        if run.error is not None or run.missing or not isinstance(run.value, list):
            return [dataclasses.replace(whole) for _ in events]
        results = []
        for index, _event in enumerate(events):
            item = run.value[index] if index < len(run.value) else None
            status = item.get("status") if isinstance(item, dict) else None
            if not isinstance(status, int) or 200 <= status < 300:
                results.append(dataclasses.replace(whole))
                continue
            message = str(item.get("errormessage") or item.get("errorMessage") or f"status {status}")[:1000]
            outcome = "retry" if status in (408, 429) or status >= 500 else "failed"
            results.append(
                Result(
                    outcome,
                    status_code=status,
                    error_code=f"batch_{status}",
                    error_message=f"onBatch: {message}",
                    exchanges=whole.exchanges,
                    logs=whole.logs,
                )
            )
        return results

    def preview(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The fetch calls the function would make for this event, recorded and not sent (the Event Tester's dry
        run); its console output comes as a note. Run in a throwaway context: the empty answers of unsent calls
        must not become the warm context's module state (a cached token) that live deliveries use."""
        handler = "onBatch" if self.batches else HANDLER_OF_TYPE.get(event.get("type", ""), "")
        dry = Fetcher(self.secret_values(), send=False)
        args = [[event] if self.batches else event, self.settings]
        sandbox = Sandbox(self.function.code)
        try:
            run = sandbox.invoke(handler, args, dry) if handler else Invocation(missing=True)
        finally:
            sandbox.close()
        if run.missing:
            raise DeliveryError(
                f"The function has no {handler or 'handler'} for this event: it would be filtered.",
                code="event_not_supported",
            )
        if run.error is not None and run.error.code not in RETRIED:
            raise DeliveryError(run.error.text, code=run.error.code, hint=HINTS.get(run.error.code, ""))
        logs = "; ".join(line["message"] for line in run.logs)[:500]
        return [
            {
                "method": x["request"]["method"],
                "url": x["request"]["url"],
                "headers": x["request"]["headers"],
                "body": x["request"]["body"],
                "note": "fetch recorded, not sent" + (f". console: {logs}" if logs else ""),
            }
            for x in run.exchanges
        ] or [{"method": "", "url": "", "headers": {}, "body": run.value, "note": "the function makes no fetch call"}]


def result_of(run: Invocation, handler: str) -> Result:
    """A delivery's Result from an invocation: Segment's error classes decide the outcome."""
    status = next((x["response"]["status"] for x in reversed(run.exchanges) if x.get("response")), None)
    common = {"exchanges": run.exchanges, "logs": run.logs, "status_code": status}
    if run.missing:
        return Result(
            "filtered",
            error_code="event_not_supported",
            error_message=f"the function has no {handler} handler (Unsupported Event Type)",
            **common,
        )
    error: FunctionError | None = run.error
    if error is None:
        hint = ""
        if status is not None and status >= 400:
            hint = (
                f"The function returned normally, but its last fetch was answered {status}: "
                "throw an error there if the call failed (RetryError to retry)."
            )
        return Result("delivered", hint=hint, **common)
    outcome = "retry" if error.code in RETRIED else "filtered" if error.code in FILTERED else "failed"
    return Result(
        outcome, error_code=error.code, error_message=error.text[:2000], hint=HINTS.get(error.code, ""), **common
    )
