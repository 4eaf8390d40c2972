"""How a vendor fake joins the sandbox: declared in its own module, found by discovery, nothing else edited."""

from __future__ import annotations

import ast
import copy
import textwrap
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management.base import CommandError

from integrations.management.commands.sandbox import Command
from integrations.sandbox.fake import Fake, texts, whole
from integrations.sandbox.server import Sandbox, declared_settings, discover
from integrations.sandbox.wire import Request, Response

BASE_DIR = Path(__file__).resolve().parents[2]
SANDBOX = BASE_DIR / "integrations" / "sandbox"


class Echo(Fake):
    """A throwaway fake: answers every call with its configured status and keeps what it heard."""

    service = "echo"
    settings = {
        "echo_status": whole(200, "the status every call is answered with"),
        "echo_keys": texts({"agent@example.com": "echo-secret"}, "API keys by agent", secrets=True),
    }
    counters = ("echo_calls",)
    readers = ("heard",)
    banner = {"echo_base": "Echo base"}

    def reset(self) -> None:
        self.heard: list[Any] = []

    def handle(self, req: Request) -> Response:
        with self.sb.lock:
            self.sb.count("echo_calls")
            self.heard.append(req.json)
            return Response(self.sb.settings.echo_status, {"heard": len(self.heard)})

    def links(self, url: str) -> dict[str, str]:
        return {"echo_base": f"{url}/echo", "echo_heard": f"{url}/_sandbox/echo/heard"}

    def read(self, route: str) -> Response | None:
        return Response(200, {"heard": copy.deepcopy(self.heard)}) if route == "echo/heard" else None

    def gauges(self) -> dict[str, int]:
        return {"echo_heard": len(self.heard)}

    def settings_changed(self, names: Collection[str]) -> None:
        if "echo_status" in names:
            self.heard.append("status changed")


@pytest.mark.e2e
def test_a_fake_defined_in_a_test_module_is_served_with_its_settings_counters_and_log() -> None:
    with Sandbox(port=0, fakes=[*discover(), Echo], echo_status=202) as sb, requests.Session() as http:
        answer = http.post(f"{sb.url}/echo/anything", json={"n": 1})
        assert (answer.status_code, answer.json()) == (202, {"heard": 1})

        changed = http.post(f"{sb.url}/_sandbox/config", json={"echo_status": 201, "echo_keys": {"b@x.io": "hush"}})
        assert changed.status_code == 200, changed.text
        refused = http.post(f"{sb.url}/_sandbox/config", json={"echo_status": -1})
        assert refused.json() == {"error": "echo_status must be a whole number, 0 or more, not -1."}
        assert http.post(f"{sb.url}/echo/again", json={"n": 2}).status_code == 201

        overview = http.get(f"{sb.url}/_sandbox").json()
        assert overview["settings"]["echo_status"] == 201
        assert overview["settings"]["echo_keys"] == {"b@x.io": "[REDACTED]"}
        assert (overview["counters"]["echo_calls"], overview["counters"]["echo_heard"]) == (2, 3)
        assert overview["counters"]["sfmc_calls"] == 0  # the discovered fakes are served beside it
        assert overview["links"]["echo_base"] == f"{sb.url}/echo"
        assert http.get(overview["links"]["echo_heard"]).json() == {"heard": [{"n": 1}, "status changed", {"n": 2}]}
        assert sb.heard == [{"n": 1}, "status changed", {"n": 2}]
        assert sb.settings.echo_status == 201
        assert [entry["path"] for entry in sb.received(service="echo")] == ["/echo/anything", "/echo/again"]
        assert "hush" not in repr(sb.received())  # the secret sent to /_sandbox/config is redacted in the log

        sb.reset()
        assert (sb.heard, sb.counters["echo_calls"]) == ([], 0)


@pytest.mark.e2e
def test_discovery_finds_the_fakes_a_package_of_their_own_defines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = f"fakes_{uuid.uuid4().hex}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "parrot.py").write_text(
        textwrap.dedent(
            """
            from integrations.sandbox.fake import Fake, rate
            from integrations.sandbox.sink import Sink  # imported, not defined here: not this package's fake
            from integrations.sandbox.wire import Response


            class Quiet(Fake):
                '''A base for fakes: no service, so not a fake itself.'''


            class Parrot(Quiet):
                service = "parrot"
                settings = {"parrot_mumble_rate": rate(0.0, "share of calls answered 500")}
                counters = ("parrot_calls",)

                def handle(self, req):
                    with self.sb.lock:
                        self.sb.count("parrot_calls")
                        return Response(500 if self.sb.draw(self.sb.settings.parrot_mumble_rate) else 200, req.path)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    [parrot] = discover(package)

    assert (parrot.__name__, parrot.service) == ("Parrot", "parrot")
    with Sandbox(port=0, fakes=[parrot], parrot_mumble_rate=1) as sb:
        assert requests.get(f"{sb.url}/parrot/hello", timeout=5).status_code == 500
        assert sb.counters == {"parrot_calls": 1}
        assert requests.get(f"{sb.url}/sfmc/auth/v2/token", timeout=5).status_code == 404  # only what was given


def test_the_sandbox_discovers_its_own_fakes() -> None:
    found = sorted(fake.service for fake in discover())
    assert {"marketo", "sfmc", "sink"} <= set(found), "a vendor's fake is found, whatever others are added"
    assert sorted(Sandbox().fakes) == found


def test_two_fakes_declaring_one_name_are_refused() -> None:
    twin = type("Twin", (Echo,), {"service": "twin", "readers": ()})

    with pytest.raises(ValueError, match="Twin declares the setting 'echo_status', which is already Echo's"):
        declared_settings([Echo, twin])
    with pytest.raises(ValueError, match="declares the setting 'seed', which is already Sandbox's"):
        declared_settings([type("Seedy", (Fake,), {"service": "seedy", "settings": {"seed": whole(1, "")}})])
    with pytest.raises(ValueError, match="declares the attribute 'reset', which is already Sandbox's"):
        Sandbox(fakes=[type("Clash", (Fake,), {"service": "clash", "readers": ("reset",)})])


def test_every_scalar_setting_is_a_flag_of_the_command_under_its_old_name() -> None:
    parser = Command().create_parser("manage.py", "sandbox")

    for flag, name, kind in [
        ("--error-rate", "error_rate", float),
        ("--rate-429", "rate_429", float),
        ("--retry-after", "retry_after", int),
        ("--latency-ms", "latency_ms", float),
        ("--token-lifetime", "token_lifetime", int),
        ("--marketo-token-lifetime", "marketo_token_lifetime", int),
        ("--marketo-rate-limit", "marketo_rate_limit", int),
        ("--marketo-rate-window", "marketo_rate_window", float),
        ("--marketo-concurrency", "marketo_concurrency", int),
        ("--marketo-daily-quota", "marketo_daily_quota", int),
        ("--sfmc-10006-rate", "sfmc_10006_rate", float),
        ("--seed", "seed", int),
    ]:
        parsed = vars(parser.parse_args([flag, "3"]))[name]
        assert (parsed, type(parsed)) == (3, kind), flag
    with pytest.raises(CommandError, match="unrecognized arguments: --sfmc-clients"):
        parser.parse_args(["--sfmc-clients", "{}"])  # JSON settings are set through POST /_sandbox/config


def imports(path: Path) -> set[str]:
    """What a file imports, at any depth (TYPE_CHECKING blocks and functions too), as dotted names: `from a.b import
    c` is a.b.c, whether c is a module or a name in a.b, and relative imports are resolved."""
    package = list(path.relative_to(BASE_DIR).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def within(name: str, module: str) -> bool:
    return name == module or name.startswith(f"{module}.")


def test_no_module_of_the_sandbox_imports_the_server() -> None:
    # Except __init__.py, the package's public face: it re-exports Sandbox (`from integrations.sandbox import
    # Sandbox` in tests and elsewhere), is no fake, and no module imports it by name.
    modules = [path for path in SANDBOX.rglob("*.py") if path != SANDBOX / "__init__.py"]
    names = {str(path.relative_to(SANDBOX)) for path in modules}
    assert {"fake.py", "server.py", "sfmc/__init__.py", "marketo.py", "sink.py", "wire.py"} <= names

    importers = [path for path in modules if any(within(n, "integrations.sandbox.server") for n in imports(path))]

    assert importers == []


def test_the_server_imports_no_fake_by_name() -> None:
    fakes = {fake.__module__ for fake in discover()}

    assert [name for name in imports(SANDBOX / "server.py") if any(within(name, fake) for fake in fakes)] == []


def test_the_fakes_import_nothing_of_the_sandbox_but_fake_and_wire() -> None:
    for fake in discover():
        own = ".".join(fake.__module__.split(".")[:3])  # the fake's module, or its package when it is one
        home = BASE_DIR.joinpath(*own.split("."))
        files = [*home.rglob("*.py")] if home.is_dir() else [home.with_suffix(".py")]
        allowed = ("integrations.sandbox.fake", "integrations.sandbox.wire", own)
        for path in files:
            names = {name for name in imports(path) if within(name, "integrations.sandbox")}
            assert [name for name in names if not any(within(name, module) for module in allowed)] == [], path
