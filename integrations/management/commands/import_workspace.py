from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integrations.workspace import WorkspaceError, import_workspace


class Command(BaseCommand):
    help = (
        "Create or update functions, sources and destinations from a workspace JSON file, matched by slug "
        "(functions first: the others name them)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="Path to the workspace JSON file ('-' for standard input)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            if path == "-":
                data = json.load(sys.stdin)
            else:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # not JSON, or not even UTF-8 text
            raise CommandError(f"{path} is not valid JSON: {exc}") from exc
        try:
            report = import_workspace(data)
        except WorkspaceError as exc:
            raise CommandError("Nothing was imported:\n  " + "\n  ".join(exc.problems)) from exc
        for line in report.lines():
            self.stdout.write(line)
