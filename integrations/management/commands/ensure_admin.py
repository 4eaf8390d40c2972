from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin login if there is no superuser yet, and print it (once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=os.environ.get("CDPHUB_ADMIN_USER", "admin"))
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Admin login: the superuser already exists (its password was printed when it was made).")
            return
        password = os.environ.get("CDPHUB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(options["username"], "", password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin login (shown once): {options['url']}  user: {options['username']}  password: {password}"
            )
        )
