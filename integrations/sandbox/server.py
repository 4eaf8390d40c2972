"""The sandbox: every vendor fake of integrations/sandbox on one port, with faults, a received log and controls.

    with Sandbox(port=0, error_rate=0.2, seed=7) as sb:
        sb.url                                  # http://127.0.0.1:<port>
        sb.received(service="sfmc")             # every request, secrets redacted
        sb.counters["marketo_606"]

Each fake (a `Fake` subclass, see fake.py) is found by `discover` (discovery.py) and served under /<service>/;
the control endpoint is /_sandbox. The server names no vendor: the settings, counters, control reads, links and
readers are what the fakes declare. `Sandbox.lock` guards the fakes' state; latency sleeps happen outside it.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from integrations.sandbox.discovery import discover, refuse_clashes
from integrations.sandbox.fake import Fake, Fault, Setting, Settings, amount, rate, whole
from integrations.sandbox.listener import Listener
from integrations.sandbox.log import ReceivedLog
from integrations.sandbox.wire import Request, Response, redact


def _seed(name: str, value: Any) -> int | None:
    """A seed for the fault generator: a whole number for repeatable runs, or null for different ones each time."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number or null, not {value!r}.")
    return int(value)


COMMON: dict[str, Setting] = {  # the settings of every fake's faults
    "error_rate": rate(0.0, "share of REST calls answered with a transient server error (0..1)"),
    "rate_429": rate(0.0, "share of REST calls answered as throttled (0..1)"),
    "retry_after": whole(1, "seconds in Retry-After headers"),
    "latency_ms": amount(0.0, "delay added to every request"),
    "seed": Setting(None, "seed of the fault random generator, for repeatable runs", _seed, int),
}


def declared_settings(fakes: Sequence[type[Fake]]) -> dict[str, Setting]:
    """Every setting: the common ones, then each fake's (what the constructor, config and the command take)."""
    refuse_clashes(fakes, "Sandbox", COMMON, [*dir(Sandbox), *Sandbox.__annotations__])
    return {**COMMON, **{name: setting for fake in fakes for name, setting in fake.settings.items()}}


def check_setting(declared: dict[str, Setting], name: str, value: Any) -> Any:
    """The value to store for a setting; raises ValueError with a message a person can act on."""
    if name not in declared:
        raise ValueError(f"Unknown setting '{name}'. Known settings: {', '.join(declared)}.")
    return declared[name].check(name, value)


class Sandbox:
    """The fake vendors' server, in a daemon thread; also a context manager. `fakes` defaults to `discover()`."""

    host: str
    port: int
    lock: threading.Lock
    settings: Settings
    declared: dict[str, Setting]  # every setting, by name
    secret_maps: set[str]  # the settings whose values are secrets
    fakes: dict[str, Fake]  # by service
    log: ReceivedLog

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, fakes: Sequence[type[Fake]] | None = None, **settings: Any
    ) -> None:
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        kinds = discover() if fakes is None else list(fakes)
        self.declared = declared_settings(kinds)
        self.secret_maps = {name for name, setting in self.declared.items() if setting.secrets}
        self.settings = Settings(**{name: setting.fresh() for name, setting in self.declared.items()})
        for name, value in settings.items():
            setattr(self.settings, name, check_setting(self.declared, name, value))
        self.log = ReceivedLog(self.secret_maps)
        self._counter_names = [name for kind in kinds for name in kind.counters]
        self._counters = dict.fromkeys(self._counter_names, 0)
        self._turns: Counter[str] = Counter()
        self._rng = random.Random(self.settings.seed)
        self.fakes: dict[str, Fake] = {kind.service: kind(self) for kind in kinds}
        self._listener: Listener | None = None

    def __getattr__(self, name: str) -> Any:
        """A fake by its service (`sb.sfmc`), or a reader a fake declares (`sb.journey_entries`, `sb.leads()`)."""
        fakes: dict[str, Fake] = self.__dict__.get("fakes", {})
        if name in fakes:
            return fakes[name]
        for fake in fakes.values():
            if name in fake.readers:
                return self._reader(fake, name)
        raise AttributeError(f"'Sandbox' object has no attribute '{name}': no fake declares it")

    def _reader(self, fake: Fake, name: str) -> Any:
        """A copy of a fake's attribute read under the lock, or for a method, a function that calls it so."""
        if not callable(getattr(type(fake), name, None)):
            with self.lock:
                return copy.deepcopy(getattr(fake, name))
        method: Callable[..., Any] = getattr(fake, name)

        def read(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return copy.deepcopy(method(*args, **kwargs))

        return read

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
        """The base URLs to configure in the hub's destinations, and the control endpoint's."""
        url = self.url
        with self.lock:
            links = {name: link for fake in self.fakes.values() for name, link in fake.links(url).items()}
        example = f"service={next(iter(self.fakes))}&" if self.fakes else ""
        received = {"received": f"{url}/_sandbox/received?{example}limit=100"}
        return {**links, "control": f"{url}/_sandbox", "config": f"{url}/_sandbox/config", **received}

    # Controls --------------------------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change some settings (all are checked before any is applied)."""
        checked = {name: check_setting(self.declared, name, value) for name, value in settings.items()}
        with self.lock:
            for name, value in checked.items():
                setattr(self.settings, name, value)
            if "seed" in checked:
                self._rng = random.Random(self.settings.seed)
            for fake in self.fakes.values():
                fake.settings_changed(checked.keys())

    def expire_tokens(self) -> None:
        """Every token any fake issued so far expires now (SFMC answers 401, Marketo 602)."""
        with self.lock:
            for fake in self.fakes.values():
                fake.expire_tokens()

    def reset(self) -> None:
        """Forget requests, counters, tokens and whatever the fakes were sent; keep settings."""
        with self.lock:
            self.log.clear()
            self._counters = dict.fromkeys(self._counter_names, 0)
            self._turns.clear()
            self._rng = random.Random(self.settings.seed)
            for fake in self.fakes.values():
                fake.reset()

    # What happened ---------------------------------------------------------------------------------

    def received(self, service: str | None = None, path_contains: str | None = None) -> list[dict[str, Any]]:
        """Requests received, oldest first, optionally only one service's or those whose path contains a string."""
        return self.log.select(service, path_contains)

    @property
    def counters(self) -> dict[str, int]:
        with self.lock:
            return {**self._counters, **{name: n for fake in self.fakes.values() for name, n in fake.gauges().items()}}

    # For the fakes (fake.Host; call with the lock held, except pause) ----------------------------------

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

    # HTTP (listener.Owner) -------------------------------------------------------------------------

    def dispatch(self, req: Request) -> tuple[str, Response]:
        """Hand /<service>/… to that fake; everything else is the control endpoint's."""
        for service, fake in self.fakes.items():
            if req.path.startswith(f"/{service}/"):
                return service, fake.handle(req)
        return "control", self.control(req)

    def record(self, service: str, req: Request, headers: dict[str, str], response: Response) -> None:
        self.log.add(service, req, headers, response)

    def control(self, req: Request) -> Response:
        """The JSON control endpoint: settings and counters, changes, and what the fakes hold."""
        route = req.path.rstrip("/") or "/_sandbox"
        if route == "/_sandbox" and req.method == "GET":
            with self.lock:
                view = redact(vars(self.settings), self.secret_maps)
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
                return Response(200, {"settings": redact(vars(self.settings), self.secret_maps)})
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
        """GET /_sandbox/received, or the first fake's answer to GET /_sandbox/<its route>."""
        if route == "/_sandbox/received":
            entries = self.received(query.get("service"), query.get("path_contains"))
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else 100
            return Response(200, {"received": entries[-limit:] if limit else []})
        if route.startswith("/_sandbox/"):
            with self.lock:
                for fake in self.fakes.values():
                    if (answer := fake.read(route.removeprefix("/_sandbox/"))) is not None:
                        return answer
        return Response(404, {"error": f"No control route GET {route}. GET /_sandbox lists the links."})
