from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from integrations.management.commands.ensure_admin import named_user_or_admin
from integrations.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create a management API token for the admin (or --username) and print only the token, once, so a script "
        "can read it: TOKEN=$(python manage.py create_api_token --name ci). It is stored only as a digest."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True, help='What the token is for, e.g. "CI: deploy workspace"')
        parser.add_argument("--username", help="Whose token (default: the admin `make run` made); it acts as them")
        parser.add_argument("--expires-in-days", type=int, help="Expire after this many days (default: never)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = named_user_or_admin(options["username"])
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be 1 or more.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        _, token = ApiToken.issue(user, options["name"], expires_at=expires_at)
        self.stdout.write(token)  # alone on its line, for $(...); printed once, never logged
