"""The destination vendor contract: a Vendor is built with its destination's settings and turns events into HTTP
calls, one Result per event. It never writes rows; what it needs to keep between calls (a shared OAuth token, a
lock, a cache) it asks of the state it is given (vendors/state.py).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import requests

from integrations.crypto import MASK
from integrations.mapping import apply_mapping, check_mapping
from integrations.typed_settings import parse_settings
from integrations.vendors.http import HttpClient, describe_response, retry_after_seconds
from integrations.vendors.results import DeliveryError, Outcome, Result
from integrations.vendors.state import MemoryState, VendorState

__all__ = ["DeliveryError", "Outcome", "Result", "Vendor", "hints_beside"]


def hints_beside(module_file: str, name: str = "hints.json") -> dict[str, str]:
    """A vendor's hint table, kept as data beside its module: error code -> one sentence that says what to do."""
    return json.loads((Path(module_file).parent / name).read_text(encoding="utf-8"))


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
    # Requests per seconds: the fixed limit, or the ceiling an adaptive limit starts at and never passes.
    default_rate_limit: ClassVar[tuple[int, float]] = (50, 1.0)
    # The vendor's documented hard limit, where it has one: no destination's setting goes above it.
    rate_ceiling: ClassVar[tuple[int, float] | None] = None
    default_concurrency: ClassVar[int] = 4
    # What sending an event again does there beyond the data (an SFMC journey admits the contact once more), as
    # the end of a sentence; replays of such a destination ask the marketer to confirm. Empty: nothing.
    replay_warning: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # name -> {"label", "filter", "mapping"}: admin form buttons
    hints: ClassVar[dict[str, str]] = {}  # error code -> what the marketer should do about it
    insert_step: Any = None  # the destination's insert function, set by the engine (integrations/functions/insert.py)
    run_seconds: float = 0.0  # what one deliver() may spend beyond its HTTP calls' timeouts (a function's limit)

    def __init__(
        self,
        config: dict[str, Any],
        credentials: dict[str, Any],
        mapping: Any = None,
        *,
        timeout: float = 10.0,
        state: VendorState | None = None,
    ) -> None:
        # Shared tokens, locks and caches: the hub's database-backed state, or this object's own memory.
        self.state: VendorState = state if state is not None else MemoryState()
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

    def hint(self, code: str) -> str:
        """What to do about an error code, from the vendor's hint table ("" when it has none)."""
        return self.hints.get(code, "")

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
