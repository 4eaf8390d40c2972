"""The admin login `make run` prints at every start, and `reset_admin_password` for a login that was lost."""

from __future__ import annotations

import logging
import re
import stat
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, no_color=True)
    return out.getvalue()


def shown_password(output: str) -> str | None:
    found = re.search(r"password: (\S+)$", output, re.MULTILINE)
    return found.group(1) if found else None


def test_the_generated_login_is_printed_at_every_start_while_it_still_works(data_dir: Path) -> None:
    first = run("ensure_admin", "--url", "http://127.0.0.1:8001/admin/")
    password = shown_password(first)
    assert first.startswith("Admin login: http://127.0.0.1:8001/admin/  user: admin  password: ")
    assert password
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert stat.S_IMODE((data_dir / "admin_password").stat().st_mode) == 0o600

    assert shown_password(run("ensure_admin")) == password
    assert get_user_model().objects.count() == 1


def test_a_changed_password_is_not_shown_and_the_kept_copy_is_deleted(data_dir: Path) -> None:
    run("ensure_admin")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("mine-now")
    admin.save()

    output = run("ensure_admin")

    assert shown_password(output) is None
    assert "mine-now" not in output
    assert "user: admin  (password: the one you set)" in output
    assert not (data_dir / "admin_password").exists()


def test_the_hint_for_a_lost_password_is_a_command_that_pastes_as_printed() -> None:
    get_user_model().objects.create_superuser("root", "", "chosen")

    hint = run("ensure_admin").splitlines()[-1]

    python = Path(sys.executable)
    if python.is_relative_to(Path.cwd()):
        python = python.relative_to(Path.cwd())
    assert hint == f"  {python} manage.py reset_admin_password"


def test_a_password_from_the_environment_is_never_written_down(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPHUB_ADMIN_PASSWORD", "from-the-env")

    assert shown_password(run("ensure_admin")) == "from-the-env"
    assert not (data_dir / "admin_password").exists()
    assert shown_password(run("ensure_admin")) is None


def test_reset_gives_the_admin_a_new_password_printed_once_and_never_logged(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = shown_password(run("ensure_admin"))
    caplog.set_level(logging.DEBUG)

    output = run("reset_admin_password")

    new = re.search(r"^New password for admin \(shown once\): (\S+)  log in at http://127.0.0.1:8000/admin/$", output)
    assert new, output
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(new.group(1))
    assert not admin.check_password(old)
    assert new.group(1) not in caplog.text
    assert not (data_dir / "admin_password").exists()
    assert new.group(1) not in run("ensure_admin")


def test_reset_takes_another_user_by_username() -> None:
    get_user_model().objects.create_superuser("admin", "", "admin-pw")
    get_user_model().objects.create_user("mia", password="old", is_staff=True)

    output = run("reset_admin_password", "--username", "mia")

    mia = get_user_model().objects.get(username="mia")
    assert mia.check_password(output.split("(shown once): ")[1].split()[0])
    assert get_user_model().objects.get(username="admin").check_password("admin-pw")


def test_reset_says_what_to_do_when_there_is_no_such_user() -> None:
    with pytest.raises(CommandError, match="There is no admin yet: `make run`"):
        run("reset_admin_password")
    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        run("reset_admin_password", "--username", "nobody")
