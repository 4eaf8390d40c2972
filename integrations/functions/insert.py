"""Insert functions: a destination's own JavaScript run on each event after routing and before the vendor,
Segment's contract: `onTrack(event, settings)` … returns the event (changed or not) to send it, throws to drop it.

Outcomes: a returned object is the event the vendor gets; no handler for the type, `DropEvent` or
`EventNotSupported` filters the delivery with the reason (shown in the trace, "Filtered at insert function");
`RetryError` or a time-out retries it; any other throw fails it with the message and the line. What the
function logged and fetched is kept on the attempt before the vendor's own exchanges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrations.functions.declaration import secret_values, settings_for
from integrations.functions.fetch import Fetcher
from integrations.functions.runtime import HANDLER_OF_TYPE, sandbox_for
from integrations.vendors.results import Result

HINT = "The destination's insert function decided this: open it and use Run test with this event."


@dataclass
class Inserted:
    """One event through the insert function: the event to send, or the Result that ends the delivery."""

    event: dict[str, Any] | None
    result: Result | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)


class InsertStep:
    def __init__(self, destination: Any) -> None:
        function = destination.insert_function
        secrets = destination.insert_secrets if isinstance(destination.insert_secrets, dict) else {}
        self.code = function.code
        self.slug = function.slug
        self.settings = settings_for(function.settings, destination.insert_settings, secrets)
        self.fetcher = Fetcher(secret_values(secrets), destination.timeout)
        self.owner = f"insert:{destination.pk}"

    def apply(self, event: dict[str, Any]) -> Inserted:
        handler = HANDLER_OF_TYPE.get(str(event.get("type", "")), "")
        sandbox = sandbox_for(self.owner, self.code, self.settings)
        run = sandbox.invoke(handler, [event, self.settings], self.fetcher) if handler else None
        if run is None or run.missing:
            reason = f"Filtered at insert function {self.slug}: it has no {handler or 'handler'} for this event"
            return Inserted(None, Result("filtered", error_code="insert_filtered", error_message=reason, hint=HINT))
        logs = [{**line, "from": "insert function"} for line in run.logs]
        exchanges = [{**x, "note": (x.get("note", "") + " (insert function)").strip()} for x in run.exchanges]
        error = run.error
        if error is None and isinstance(run.value, dict):
            return Inserted(run.value, None, logs, exchanges)
        if error is None:
            error_code, outcome = "insert_dropped", "filtered"
            message = f"Filtered at insert function {self.slug}: {handler} returned no event (return the event)"
        elif error.code in ("dropped", "event_not_supported"):
            error_code, outcome = "insert_dropped", "filtered"
            message = f"Dropped by insert function {self.slug}: {error.text}"
        elif error.code in ("function_retry", "function_timeout"):
            error_code, outcome, message = error.code, "retry", f"Insert function {self.slug}: {error.text}"
        else:
            error_code, outcome, message = (
                f"insert_{error.code}",
                "failed",
                f"Insert function {self.slug}: {error.text}",
            )
        return Inserted(
            None,
            Result(
                outcome, error_code=error_code, error_message=message[:2000], hint=HINT, logs=logs, exchanges=exchanges
            ),
        )
