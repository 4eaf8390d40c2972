from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from integrations.management.commands.ensure_admin import first_superuser, forget_password


class Command(BaseCommand):
    help = "Give the admin (or --username) a new random password and print it once; it is stored only hashed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", help="Whose password to reset (default: the admin `make run` made)")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        if username:
            user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"There is no user {username!r}: check the name in the admin's Users list.")
        else:
            user = first_superuser()
            if user is None:
                raise CommandError("There is no admin yet: `make run` (or `python manage.py ensure_admin`) makes one.")
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        if user == first_superuser():
            forget_password()  # the generated one `make run` kept no longer logs in
        # Printed to this terminal only, never logged: the database keeps just the hash.
        self.stdout.write(
            self.style.SUCCESS(
                f"New password for {user.get_username()} (shown once): {password}  log in at {options['url']}"
            )
        )
