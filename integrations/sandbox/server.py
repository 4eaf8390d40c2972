"""The sandbox: fakes of SFMC and Marketo plus a webhook sink on one port, with faults, a received log and controls.

    with Sandbox(port=0, error_rate=0.2, seed=7) as sb:
        sb.url                                  # http://127.0.0.1:<port>
        sb.received(service="sfmc")             # every request, secrets redacted
        sb.counters["marketo_606"]

Routes: SFMC under /sfmc/auth and /sfmc/rest, Marketo under /marketo, the sink under /sink/<name>, and the control
endpoint under /_sandbox. Every piece of state is guarded by `Sandbox.lock`; latency sleeps happen outside it.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from integrations.sandbox import marketo, sfmc
from integrations.sandbox.listener import Listener
from integrations.sandbox.log import ReceivedLog
from integrations.sandbox.marketo import Marketo
from integrations.sandbox.sfmc import Sfmc
from integrations.sandbox.sink import Sink
from integrations.sandbox.wire import Request, Response, redact

COUNTERS = (
    "sfmc_tokens_issued",
    "sfmc_calls",
    "sfmc_429",
    "sfmc_faults",
    "sfmc_10006",
    "marketo_tokens_issued",
    "marketo_calls",
    "marketo_606",
    "marketo_615",
    "marketo_607",
    "marketo_faults",
    "sink_calls",
    "sink_429",
    "sink_faults",
)
COLUMN_TYPES = {"Text", "EmailAddress", "Number", "Decimal", "Date", "Boolean", "Phone"}
Fault = Literal["throttle", "error"]


@dataclass
class Settings:
    """What the fakes do: constructor kwargs, `manage.py sandbox` flags and `POST /_sandbox/config` share these."""

    error_rate: float = 0.0  # share of REST calls answered with a transient server error
    rate_429: float = 0.0  # share of REST calls answered as throttled
    retry_after: int = 1
    latency_ms: float = 0.0
    token_lifetime: int = 1079  # SFMC expires_in
    marketo_token_lifetime: int = 3600
    marketo_rate_limit: int = 100
    marketo_rate_window: float = 20.0
    marketo_concurrency: int = 10
    marketo_daily_quota: int = 50_000
    seed: int | None = None
    sfmc_10006_rate: float = 0.0  # share of rowset calls answered 10006 without additionalErrors (transient)
    sfmc_clients: dict[str, str] = field(default_factory=lambda: copy.deepcopy(sfmc.DEFAULT_CLIENTS))
    sfmc_event_definitions: dict[str, dict[str, Any]] = field(
        default_factory=lambda: copy.deepcopy(sfmc.DEFAULT_EVENT_DEFINITIONS)
    )
    sfmc_data_extensions: dict[str, dict[str, Any]] = field(
        default_factory=lambda: copy.deepcopy(sfmc.DEFAULT_DATA_EXTENSIONS)
    )
    marketo_clients: dict[str, str] = field(default_factory=lambda: copy.deepcopy(marketo.DEFAULT_CLIENTS))
    marketo_lead_fields: list[str] = field(default_factory=lambda: list(marketo.DEFAULT_LEAD_FIELDS))
    marketo_searchable_fields: list[str] = field(default_factory=lambda: list(marketo.DEFAULT_SEARCHABLE_FIELDS))
    marketo_activity_types: dict[str, dict[str, Any]] = field(
        default_factory=lambda: copy.deepcopy(marketo.DEFAULT_ACTIVITY_TYPES)
    )
    marketo_leads: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(marketo.DEFAULT_LEADS))

    def view(self) -> dict[str, Any]:
        """The settings as JSON, client secrets redacted."""
        return redact(asdict(self))


NAMES = tuple(f.name for f in fields(Settings))
RATES = {"error_rate", "rate_429", "sfmc_10006_rate"}
WHOLE = {
    "retry_after",
    "token_lifetime",
    "marketo_token_lifetime",
    "marketo_rate_limit",
    "marketo_concurrency",
    "marketo_daily_quota",
}


OF_TEXT = {"sfmc_clients", "marketo_clients", "marketo_lead_fields", "marketo_searchable_fields"}
OF_OBJECTS = {"sfmc_event_definitions", "sfmc_data_extensions", "marketo_activity_types", "marketo_leads"}


def check_setting(name: str, value: Any) -> Any:
    """The value to store for a setting; raises ValueError with a message a person can act on."""
    if name not in NAMES:
        raise ValueError(f"Unknown setting '{name}'. Known settings: {', '.join(NAMES)}.")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    whole = number and float(value).is_integer()
    if name in RATES and not (number and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}.")
    if name in WHOLE and not (whole and value >= 0):
        raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}.")
    if name in {"latency_ms", "marketo_rate_window"} and not (number and value >= 0):
        raise ValueError(f"{name} must be a number, 0 or more, not {value!r}.")
    if name == "seed" and not (value is None or whole):
        raise ValueError(f"seed must be a whole number or null, not {value!r}.")
    default = getattr(Settings(), name)
    if isinstance(default, dict | list) and not isinstance(value, type(default)):
        raise ValueError(f"{name} must be a JSON {'object' if isinstance(default, dict) else 'array'}.")
    items = list(value.values() if isinstance(value, dict) else value) if isinstance(default, dict | list) else []
    if name in OF_TEXT and not all(isinstance(item, str) for item in items):
        raise ValueError(f"{name}: every value must be a string.")
    if name in OF_OBJECTS and not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{name}: every value must be a JSON object.")
    if name == "sfmc_data_extensions":
        for key, extension in value.items():
            columns, primary_keys = extension.get("columns"), extension.get("primary_keys")
            if not isinstance(columns, dict) or set(columns.values()) - COLUMN_TYPES:
                raise ValueError(f"Data extension '{key}' needs columns typed {', '.join(sorted(COLUMN_TYPES))}.")
            if not isinstance(primary_keys, list) or not primary_keys or not set(primary_keys) <= columns.keys():
                raise ValueError(f"Data extension '{key}' needs primary_keys: a list of some of its columns.")
    if name in WHOLE or (name == "seed" and value is not None):
        return int(value)
    return copy.deepcopy(value)


class Sandbox:
    """The fake vendors' server, in a daemon thread; also a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **settings: Any) -> None:
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self.settings = Settings()
        for name, value in settings.items():
            setattr(self.settings, name, check_setting(name, value))
        self.log = ReceivedLog()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._turns: Counter[str] = Counter()
        self._rng = random.Random(self.settings.seed)
        self.sfmc = Sfmc(self)
        self.marketo = Marketo(self)
        self.sink = Sink(self)
        self._listener: Listener | None = None

    # Life cycle ------------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._listener is None:
            self._listener = Listener(self.host, self.port, self)
            self.port = self._listener.port
        return self

    def stop(self) -> None:
        """Stop listening and cut kept-alive connections, so nothing is answered after this returns."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def links(self) -> dict[str, str]:
        """The base URLs to configure in the hub's destinations."""
        return {
            "sfmc_auth_base": f"{self.url}/sfmc/auth",
            "sfmc_rest_base": f"{self.url}/sfmc/rest",
            "marketo_base": f"{self.url}/marketo",
            "sink": f"{self.url}/sink/<name>",
            "control": f"{self.url}/_sandbox",
            "config": f"{self.url}/_sandbox/config",
            "received": f"{self.url}/_sandbox/received?service=sfmc&limit=100",
            "journeys": f"{self.url}/_sandbox/journeys",
            "marketo_leads": f"{self.url}/_sandbox/marketo/leads",
            "marketo_activities": f"{self.url}/_sandbox/marketo/activities",
            **{f"data_extension_{key}": f"{self.url}/_sandbox/data-extensions/{key}" for key in self.data_extensions()},
        }

    def data_extensions(self) -> list[str]:
        with self.lock:
            return list(self.settings.sfmc_data_extensions)

    # Controls --------------------------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change some settings (all are checked before any is applied)."""
        checked = {name: check_setting(name, value) for name, value in settings.items()}
        with self.lock:
            for name, value in checked.items():
                setattr(self.settings, name, value)
            if "seed" in checked:
                self._rng = random.Random(self.settings.seed)
            if "marketo_leads" in checked:
                self.marketo.load_leads(self.settings.marketo_leads)

    def expire_tokens(self) -> None:
        """Every SFMC and Marketo token issued so far expires now (SFMC 401, Marketo 602)."""
        with self.lock:
            self.sfmc.expire_tokens()
            self.marketo.expire_tokens()

    def reset(self) -> None:
        """Forget requests, counters, tokens, journey entries, rows, leads created and activities; keep settings."""
        with self.lock:
            self.log.clear()
            self._counters = dict.fromkeys(COUNTERS, 0)
            self._turns.clear()
            self._rng = random.Random(self.settings.seed)
            self.sfmc.reset()
            self.marketo.reset()

    # What happened ---------------------------------------------------------------------------------

    def received(self, service: str | None = None, path_contains: str | None = None) -> list[dict[str, Any]]:
        """Requests received, oldest first, optionally only one service's or those whose path contains a string."""
        return self.log.select(service, path_contains)

    @property
    def counters(self) -> dict[str, int]:
        with self.lock:
            return {**self._counters, "marketo_duplicate_leads": self.marketo.duplicate_leads()}

    @property
    def journey_entries(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.sfmc.journey_entries)

    def de_rows(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            return self.sfmc.de_rows(key)

    def leads(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.marketo.leads.values()))

    def activities(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.marketo.activities)

    # For the fakes (call with the lock held, except pause) -------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        self._counters[name] += n

    def pause(self) -> None:
        """The configured latency; never call it with the lock held."""
        if self.settings.latency_ms:
            time.sleep(self.settings.latency_ms / 1000)

    def draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def fault(self) -> Fault | None:
        """One draw decides between throttling (rate_429), a server error (error_rate) and a normal answer."""
        s = self.settings
        if not (s.rate_429 or s.error_rate):
            return None
        roll = self._rng.random()
        if roll < s.rate_429:
            return "throttle"
        return "error" if roll < s.rate_429 + s.error_rate else None

    def turn(self, service: str, kinds: int) -> int:
        """Which of a service's `kinds` server errors comes next: they alternate."""
        self._turns[service] += 1
        return (self._turns[service] - 1) % kinds

    # HTTP ------------------------------------------------------------------------------------------

    def dispatch(self, req: Request) -> tuple[str, Response]:
        for prefix, service in (("/sfmc/", "sfmc"), ("/marketo/", "marketo"), ("/sink/", "sink")):
            if req.path.startswith(prefix):
                return service, getattr(self, service).handle(req)
        return "control", self.control(req)

    def record(self, service: str, req: Request, headers: dict[str, str], response: Response) -> None:
        self.log.add(service, req, headers, response)

    def control(self, req: Request) -> Response:
        """The JSON control endpoint: settings and counters, changes, and what the fakes hold."""
        route = req.path.rstrip("/") or "/_sandbox"
        if route == "/_sandbox" and req.method == "GET":
            with self.lock:
                view = self.settings.view()
            return Response(200, {"settings": view, "counters": self.counters, "links": self.links()})
        if route == "/_sandbox/config" and req.method == "POST":
            try:
                changes = req.json
                if not isinstance(changes, dict):
                    raise ValueError("Send a JSON object of settings to change.")
                self.configure(**changes)
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
            with self.lock:
                return Response(200, {"settings": self.settings.view()})
        if route in {"/_sandbox/expire-tokens", "/_sandbox/reset"} and req.method == "POST":
            if route == "/_sandbox/reset":
                self.reset()
            else:
                self.expire_tokens()
            return Response(200, {"ok": True})
        if req.method == "GET":
            return self.control_read(route, req.query)
        return Response(404, {"error": f"No control route {req.method} {req.path}. GET /_sandbox lists the links."})

    def control_read(self, route: str, query: dict[str, str]) -> Response:
        if route == "/_sandbox/received":
            entries = self.received(query.get("service"), query.get("path_contains"))
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else 100
            return Response(200, {"received": entries[-limit:] if limit else []})
        if route == "/_sandbox/journeys":
            return Response(200, {"journeys": self.journey_entries})
        if route == "/_sandbox/marketo/leads":
            return Response(200, {"leads": self.leads()})
        if route == "/_sandbox/marketo/activities":
            return Response(200, {"activities": self.activities()})
        if route.startswith("/_sandbox/data-extensions/"):
            key = route.removeprefix("/_sandbox/data-extensions/")
            if key not in self.data_extensions():
                return Response(404, {"error": f"No data extension with external key '{key}'."})
            return Response(200, {"key": key, "rows": self.de_rows(key)})
        return Response(404, {"error": f"No control route GET {route}. GET /_sandbox lists the links."})
