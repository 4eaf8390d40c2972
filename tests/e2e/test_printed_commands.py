"""The commands `make run` prints, and README's curl lines for the hub, work pasted as printed into bash and zsh.

Each command goes as printed to an interactive shell's standard input, which reads it as a terminal paste is
read: continuation lines, quotes, `!` (history expansion) and `#` (interactive zsh passes it on as an
argument). The hub is a live server with the demo workspace: each curl must get a 200 and store its event,
and the reset command printed for a lost password must give the admin a new one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from deliveries.models import Event
from integrations.models import Source
from integrations.workspace import import_workspace
from tests.e2e.conftest import test_database_url

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

BASE_DIR = Path(__file__).resolve().parent.parent.parent
README = BASE_DIR / "README.md"
README_HUB = "http://127.0.0.1:8000"
SHELLS = {
    "bash": ["bash", "--norc", "--noprofile", "-i"],
    "zsh": ["zsh", "-f", "-i"],  # -f: no startup files, so zsh's own defaults (INTERACTIVE_COMMENTS off)
}
# Read by the shell before the pasted text, which itself runs unchanged: curl also writes the HTTP status.
CURL_WITH_STATUS = "curl() { command curl -sS -w '\\nHTTP %{http_code}\\n' \"$@\"; }\n"
FORM_EVENT = "Form Submitted"  # the demo Form tool's mapping names a body without `event` this way


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: `make test` installs it (Debian package {program}).")
    return path


def make(*args: str, **env: str) -> str:
    """Run this checkout's Makefile (not an outer `make test`'s flags) with this Python as PY; return its output."""
    inherited = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    result = subprocess.run(
        [need("make"), "--no-print-directory", *args, f"PY={sys.executable}"],
        cwd=BASE_DIR,
        env={**inherited, "DJANGO_SETTINGS_MODULE": "cdphub.settings_test", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed_by_make_run(hub: str) -> str:
    """What `make run` prints before serving, from the target it calls for them (`make try-it`)."""
    return make("-s", "try-it", CDPHUB_BIND=urlsplit(hub).netloc)


def readme_shell_blocks() -> list[str]:
    return re.findall(r"^```(?:sh|bash|shell|zsh|console)\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def curl_commands(lines: Iterable[str]) -> list[str]:
    """Each curl command as printed, with the lines it continues onto (a line ending in a backslash)."""
    commands: list[str] = []
    rest = iter(lines)
    for line in rest:
        if line.lstrip().startswith("curl "):
            command = [line]
            while command[-1].endswith("\\"):
                command.append(next(rest, ""))
            commands.append("\n".join(command))
    return commands


def arguments(command: str) -> list[str]:
    return shlex.split(command.replace("\\\n", " "))


def url_of(command: str) -> str:
    return next(arg for arg in arguments(command) if arg.startswith("http"))


def expected_event(command: str) -> dict[str, str]:
    """The event the hub should store for a command, read from its URL, write key and JSON body."""
    args = arguments(command)
    body = json.loads(args[args.index("-d") + 1])
    path = urlsplit(url_of(command)).path
    if path.startswith("/v1/webhooks/"):
        write_key = path.rsplit("/", 1)[1]
        return {"write_key": write_key, "type": "track", "event": FORM_EVENT, "message_id": body["id"]}
    write_key = args[args.index("-u") + 1].rstrip(":")
    return {
        "write_key": write_key,
        "type": path.rsplit("/", 1)[1],
        "event": body.get("event", ""),
        "user_id": body["userId"],
    }


def run_pasted(shell: str, text: str, home: Path, cwd: Path | None = None, **env: str) -> tuple[str, str]:
    """Give `text` to an interactive shell as a paste; return what it printed (stdout, and everything)."""
    argv = [need(SHELLS[shell][0]), *SHELLS[shell][1:]]
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "ZDOTDIR": str(home), "LANG": "C.UTF-8", "TERM": "dumb"}
    result = subprocess.run(
        argv,
        input=text + "\n",
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=cwd or home,
        timeout=60,
        check=False,
        start_new_session=True,  # no controlling terminal, so the shell cannot take over the developer's tty
    )
    return result.stdout, f"{shell} printed:\n{result.stdout}\n{result.stderr}"


def paste(shell: str, command: str, home: Path) -> tuple[int, Any, str]:
    """Paste a curl command; return the HTTP status, the JSON body and the shell's output."""
    need("curl")
    stdout, output = run_pasted(shell, CURL_WITH_STATUS + command, home)
    statuses = re.findall(r"^HTTP (\d{3})$", stdout, re.MULTILINE)
    assert len(statuses) == 1, f"pasted into {shell}, this is not one HTTP request:\n{command}\n{output}"
    text = stdout.split("\nHTTP ", 1)[0]
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = text
    return int(statuses[0]), body, output


def assert_pastes(shell: str, command: str, home: Path) -> None:
    last = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    status, body, output = paste(shell, command, home)
    accepted = status == 200 and isinstance(body, dict) and body.get("success") is True
    assert accepted, f"pasted into {shell}:\n{command}\n{output}"
    expected = expected_event(command)
    stored = [
        {"write_key": e.source.write_key, "type": e.type, "event": e.event, "status": e.status}
        | ({"message_id": e.message_id} if "message_id" in expected else {"user_id": e.user_id})
        for e in Event.objects.filter(id__gt=last).select_related("source")
    ]
    assert stored == [{**expected, "status": Event.Status.ACCEPTED}], f"pasted into {shell}:\n{command}"


@pytest.fixture
def demo_hub(live_server: Any, transactional_db: None) -> str:
    """A live hub with the demo workspace `make run` imports."""
    import_workspace(json.loads((BASE_DIR / "cdphub" / "demo_workspace.json").read_text(encoding="utf-8")))
    return str(live_server.url)


@pytest.mark.parametrize("shell", SHELLS)
def test_every_curl_make_run_prints_works_pasted_as_printed(shell: str, demo_hub: str, tmp_path: Path) -> None:
    commands = curl_commands(printed_by_make_run(demo_hub).splitlines())
    assert [urlsplit(url_of(c)).path for c in commands] == ["/v1/identify", "/v1/track", "/v1/webhooks/wk_demo_forms"]
    for command in commands:
        assert_pastes(shell, command, tmp_path)
    assert Source.objects.get(write_key="wk_demo_forms").events.get().anonymous_id == "ada@example.com"


@pytest.mark.parametrize("shell", SHELLS)
def test_every_curl_to_the_hub_in_readme_works_pasted_as_printed(shell: str, demo_hub: str, tmp_path: Path) -> None:
    commands = [
        c
        for block in readme_shell_blocks()
        if "Authorization: Bearer" not in block  # the management API's walk-through: test_readme_api_walkthrough.py
        for c in curl_commands(block.splitlines())
        if README_HUB in c
    ]
    assert commands, f"README has no curl command for {README_HUB} in a shell block"
    for command in commands:
        assert_pastes(shell, command.replace(README_HUB, demo_hub), tmp_path)


def test_readme_shell_blocks_carry_no_comments_that_zsh_would_pass_on_as_arguments() -> None:
    commented = [line for block in readme_shell_blocks() for line in block.splitlines() if re.search(r"(^|\s)#", line)]
    assert commented == [], "interactive zsh takes `#` literally: put the explanation in the text around the block"


@pytest.mark.parametrize("shell", SHELLS)
def test_the_reset_command_make_run_prints_for_a_lost_password_works_pasted_as_printed(
    shell: str, transactional_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_user_model().objects.create_superuser("admin", "", "forgotten")
    monkeypatch.chdir(BASE_DIR)  # where make run prints it
    printed = StringIO()
    call_command("ensure_admin", stdout=printed, no_color=True)
    lines = printed.getvalue().splitlines()
    command = lines[lines.index("Lost it? This sets a new one and prints it once:") + 1]

    stdout, output = run_pasted(
        shell,
        command,
        tmp_path,
        cwd=BASE_DIR,
        DJANGO_SETTINGS_MODULE="cdphub.settings_test",
        CDPHUB_DATA_DIR=str(settings.DATA_DIR),
        CDPHUB_DATABASE_URL=test_database_url(),
    )

    new = re.search(r"^New password for admin \(shown once\): (\S+)  ", stdout, re.MULTILINE)
    assert new, f"pasted into {shell}:\n{command}\n{output}"
    assert get_user_model().objects.get(username="admin").check_password(new.group(1))


def test_make_run_prints_the_admin_login_last_before_it_serves() -> None:
    plan = make("-n", "run")  # the commands in order, none run
    steps = ["manage.py collectstatic", "manage.py try_it", "manage.py ensure_admin", "manage.py sandbox"]
    positions = [plan.find(step) for step in steps]
    assert -1 not in positions, plan
    assert positions == sorted(positions), plan
