from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from integrations.management.commands.ensure_admin import first_superuser, forget_password, named_user_or_admin


class Command(BaseCommand):
    help = "Give the admin (or --username) a new random password and print it once; it is stored only hashed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", help="Whose password to reset (default: the admin `make run` made)")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        user = named_user_or_admin(options["username"])
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
