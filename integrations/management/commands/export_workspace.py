from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from integrations.workspace import export_workspace


class Command(BaseCommand):
    help = (
        "Print the workspace (functions, sources and destinations) as JSON, secrets left out (function code is kept)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(export_workspace(), indent=2))
