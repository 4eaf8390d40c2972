from __future__ import annotations

import json
import shlex
from typing import Any

from django.core.management.base import BaseCommand

SANDBOX = "http://127.0.0.1:9100"
EMAIL = "ada@example.com"
IDENTIFY = {
    "userId": "user-1",
    "traits": {
        "email": EMAIL,
        "firstName": "Ada",
        "name": "Ada Lovelace",
        "company": {"name": "Analytical Engines", "industry": "Software"},  # the seed's SFMC function reads it
    },
}
ORDER_COMPLETED = {
    "userId": "user-1",
    "event": "Order Completed",
    "context": {"traits": {"email": EMAIL}},
    "properties": {"order_id": "o-1", "total": 49, "currency": "USD"},
}
FORM_SUBMISSION = {"id": "sub-1", "email": EMAIL}


def curl(url: str, body: dict[str, Any], write_key: str = "") -> list[str]:
    """One POST of a JSON body, continued between arguments only; the body is one line in single quotes.

    A backslash inside single quotes is a literal character in bash and zsh, so a body must never be broken
    there, and the lines carry no `#` comment (interactive zsh passes it to curl as arguments).
    """
    auth = f"-u {write_key}: " if write_key else ""
    return [
        f"  curl {auth}-H 'Content-Type: application/json' \\",
        f"    -d {shlex.quote(json.dumps(body))} \\",
        f"    {shlex.quote(url)}",
    ]


def try_it_lines(hub: str) -> list[str]:
    """What `make run` prints before serving: where the hub is, and commands that send the demo's events."""
    hub = hub.rstrip("/")
    return [
        "",
        f"cdphub is starting on {hub}/admin/  (Ctrl-C stops it)",
        "The demo destinations (SFMC journeys and a data extension, Marketo, Zendesk, Braze, a webhook) deliver to",
        f"the vendor sandbox on {SANDBOX} (what it received: {SANDBOX}/_sandbox). Try:",
        *curl(f"{hub}/v1/identify", IDENTIFY, write_key="wk_demo_website"),
        *curl(f"{hub}/v1/track", ORDER_COMPLETED, write_key="wk_demo_website"),
        "A tool's webhook (the demo 'Form tool' source; Customer.io, Stripe and Zendesk sources verify signatures):",
        *curl(f"{hub}/v1/webhooks/wk_demo_forms", FORM_SUBMISSION),
        "",
    ]


class Command(BaseCommand):
    help = "Print the demo's try-it lines for a hub URL (what `make run` shows before it serves)."
    requires_system_checks: list[str] = []  # it only prints: no database, no checks

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--hub", default="http://127.0.0.1:8000", help="The hub's base URL")

    def handle(self, *args: Any, **options: Any) -> None:
        for line in try_it_lines(options["hub"]):
            self.stdout.write(line)
