"""What a vendor fake declares, and the little of the sandbox's server it sees: fakes import this and wire.py only.

A fake is one module (or small package) in integrations/sandbox/ with one `Fake` subclass; the server finds it
there (discovery.py) and builds its settings, counters, control routes and links from the declarations below, so
adding a vendor touches no other file:

    class Zendesk(Fake):
        service = "zendesk"                      # served under /zendesk/, logged as "zendesk"
        settings = {"zendesk_tokens": texts({...}, "API tokens by agent email", secrets=True)}
        counters = ("zendesk_calls", "zendesk_429", "zendesk_faults")
        readers = ("tickets",)                   # sb.tickets() in tests

        def handle(self, req: Request) -> Response: ...
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar, Literal, Protocol

from integrations.sandbox.wire import Request, Response

Fault = Literal["throttle", "error"]
Check = Callable[[str, Any], Any]  # (setting name, value) -> the value to store; raises ValueError to refuse it


class Settings(SimpleNamespace):
    """The current value of every declared setting, as attributes: `sb.settings.retry_after`."""


@dataclass(frozen=True)
class Setting:
    """One setting: constructor kwarg, `POST /_sandbox/config` key and, when `flag` is set, `manage.py sandbox` flag."""

    default: Any
    help: str
    check: Check
    flag: type[int] | type[float] | None = None  # what the command-line flag parses; None: JSON-only
    secrets: bool = False  # a JSON object of client id -> secret: its values are redacted wherever they are shown

    def fresh(self) -> Any:
        """The default, copied so that one sandbox's changes never reach another's."""
        return copy.deepcopy(self.default)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rate(default: float, help: str) -> Setting:
    """A share of calls, from 0 to 1."""

    def check(name: str, value: Any) -> Any:
        if not (_is_number(value) and 0 <= value <= 1):
            raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}.")
        return value

    return Setting(default, help, check, float)


def whole(default: int, help: str) -> Setting:
    """A count of seconds or calls: a whole number, 0 or more (2.0 from JSON is stored as 2)."""

    def check(name: str, value: Any) -> Any:
        if not (_is_number(value) and float(value).is_integer() and value >= 0):
            raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}.")
        return int(value)

    return Setting(default, help, check, int)


def amount(default: float, help: str) -> Setting:
    """A duration or size that may have a fraction: a number, 0 or more."""

    def check(name: str, value: Any) -> Any:
        if not (_is_number(value) and value >= 0):
            raise ValueError(f"{name} must be a number, 0 or more, not {value!r}.")
        return value

    return Setting(default, help, check, float)


def texts(default: dict[str, str] | list[str], help: str, *, secrets: bool = False) -> Setting:
    """A JSON object or array (the default's kind) of strings."""
    return Setting(default, help, _collection(default, str, "a string"), secrets=secrets)


def objects(default: dict[str, Any] | list[Any], help: str, then: Check | None = None) -> Setting:
    """A JSON object or array (the default's kind) of JSON objects; `then` checks them further."""
    return Setting(default, help, _collection(default, dict, "a JSON object", then))


def _collection(default: Collection[Any], item: type, called: str, then: Check | None = None) -> Check:
    kind = "object" if isinstance(default, dict) else "array"

    def check(name: str, value: Any) -> Any:
        if not isinstance(value, type(default)):
            raise ValueError(f"{name} must be a JSON {kind}.")
        if not all(isinstance(each, item) for each in (value.values() if isinstance(value, dict) else value)):
            raise ValueError(f"{name}: every value must be {called}.")
        if then is not None:
            then(name, value)
        return copy.deepcopy(value)

    return check


class Host(Protocol):
    """The server as a fake sees it. `lock` guards every fake's state; call the methods with it held, except pause."""

    lock: threading.Lock
    settings: Settings

    @property
    def url(self) -> str: ...

    def count(self, name: str, n: int = 1) -> None:
        """Add to one of the counters the fake declared."""
        ...

    def pause(self) -> None:
        """Sleep the configured latency; never call it with the lock held."""
        ...

    def draw(self, rate: float) -> bool:
        """True with probability `rate`, from the seeded generator (for faults of the fake's own)."""
        ...

    def fault(self) -> Fault | None:
        """Whether this call is throttled (rate_429), fails (error_rate) or is answered normally."""
        ...

    def turn(self, service: str, kinds: int) -> int:
        """Which of a service's `kinds` server errors comes next: they alternate."""
        ...


class Fake:
    """A vendor fake: subclass it in a module of integrations/sandbox, declare the class attributes, answer `handle`.

    The server builds one instance per sandbox, after the settings; every method but `handle` runs with
    `sb.lock` held, and `handle` takes the lock itself around the fake's state (see sink.py, the smallest).
    """

    service: ClassVar[str] = ""  # URL prefix /<service>/ and the received log's name; empty: not a fake
    settings: ClassVar[Mapping[str, Setting]] = {}  # declared settings; their current values are sb.settings.<name>
    counters: ClassVar[tuple[str, ...]] = ()  # the names sb.count() takes, shown at GET /_sandbox
    readers: ClassVar[tuple[str, ...]] = ()  # attributes or methods served as sb.<name>, locked and copied
    banner: ClassVar[Mapping[str, str]] = {}  # links printed on `manage.py sandbox`'s start-up line: name -> label

    def __init__(self, sb: Host) -> None:
        self.sb = sb
        self.reset()

    def handle(self, req: Request) -> Response:
        """Answer a request whose path starts with /<service>/."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget tokens and whatever was received; settings stay."""

    def expire_tokens(self) -> None:
        """Every token issued so far expires now."""

    def settings_changed(self, names: Collection[str]) -> None:
        """Rebuild whatever state is made from these just-changed settings."""

    def links(self, url: str) -> dict[str, str]:
        """The base URLs to configure in the hub and this fake's control read routes, for GET /_sandbox."""
        return {}

    def read(self, route: str) -> Response | None:
        """The answer to `GET /_sandbox/<route>` when the route is this fake's, else None; copy what you return."""
        return None

    def gauges(self) -> dict[str, int]:
        """Counters measured from the state rather than counted, shown beside `counters`."""
        return {}
