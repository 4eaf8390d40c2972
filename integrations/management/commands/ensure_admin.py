from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError


def reset_command() -> str:
    """The reset command as this interpreter runs it (`.venv/bin/python …` under make run), so it pastes as is."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return f"{shlex.quote(str(python))} manage.py reset_admin_password"


def password_file() -> Path:
    """Where the generated admin password is kept (0600, beside var/secret_key) until someone changes it."""
    return Path(settings.DATA_DIR) / "admin_password"


def remember_password(password: str) -> None:
    fd = os.open(password_file(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left from an earlier database keeps its mode otherwise
    with os.fdopen(fd, "w") as fh:
        fh.write(password)


def forget_password() -> None:
    with contextlib.suppress(FileNotFoundError):
        password_file().unlink()


def first_superuser() -> AbstractBaseUser | None:
    """The superuser `ensure_admin` made: it makes one only while there is none, so it is the first."""
    return get_user_model().objects.filter(is_superuser=True).order_by("pk").first()


def named_user_or_admin(username: str | None) -> AbstractBaseUser:
    """The user a command's --username names, or by default the admin `make run` made; a CommandError that says
    what to do when there is none."""
    if username:
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}: check the name in the admin's Users list.")
        return user
    user = first_superuser()
    if user is None:
        raise CommandError("There is no admin yet: `make run` (or `python manage.py ensure_admin`) makes one.")
    return user


class Command(BaseCommand):
    help = "Create the admin login if there is no superuser yet, and print the login (the password while generated)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=os.environ.get("CDPHUB_ADMIN_USER", "admin"))
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        admin = first_superuser()
        if admin is None:
            chosen = os.environ.get("CDPHUB_ADMIN_PASSWORD")
            password = chosen or secrets.token_urlsafe(12)
            admin = get_user_model().objects.create_superuser(options["username"], "", password)
            if chosen:
                forget_password()  # the person chose it; never write it down
            else:
                remember_password(password)
        else:
            password = self.remembered_password(admin)
        login = f"Admin login: {options['url']}  user: {admin.get_username()}"
        if password:
            self.stdout.write(self.style.SUCCESS(f"{login}  password: {password}"))
        else:
            self.stdout.write(self.style.SUCCESS(f"{login}  (password: the one you set)"))
            self.stdout.write(f"Lost it? This sets a new one and prints it once:\n  {reset_command()}")

    def remembered_password(self, admin: AbstractBaseUser) -> str | None:
        """The generated password if it still logs in; once it has been changed, forget it."""
        try:
            password = password_file().read_text().strip()
        except FileNotFoundError:
            return None
        if password and admin.check_password(password):
            return password
        forget_password()
        return None
