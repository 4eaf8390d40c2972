"""Workspace as code: read, validate and apply a workspace file; export the same shape without secrets.

Functions, sources and destinations are matched by slug. A key left out of the file keeps the stored value (a new
row gets the model default); destination `credentials` and `insert_secrets` left out keep the stored secrets, so
an exported file, which never holds them, re-imports without change. Every problem is listed with its place and
nothing is applied unless the whole file is good.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from integrations.models import Source
from integrations.workspace.destinations import apply_destinations, check_destinations, exported_destinations
from integrations.workspace.functions import apply_functions, check_functions, exported_functions
from integrations.workspace.report import ImportReport, WorkspaceError
from integrations.workspace.sources import apply_sources, check_sources, exported_sources

__all__ = ["ImportReport", "WorkspaceError", "export_workspace", "import_workspace"]


def import_workspace(data: Any, user: Any = None) -> ImportReport:
    """Upsert functions, then sources, then destinations, by slug; importing the same file twice changes nothing.
    `user`: the author of the function versions an import saves (None: the command's)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise WorkspaceError(["The workspace file must hold a JSON object with sources and destinations lists."])
    unknown = set(data) - {"functions", "sources", "destinations"}
    if unknown:
        problems.append(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    functions = check_functions(data, problems)

    report = ImportReport()
    with transaction.atomic():
        # Sources and destinations name functions by slug and are checked against their declarations: the file's
        # good functions are written first for those checks to read, and undone with the rest on any problem.
        apply_functions(functions, report, user)
        sources = check_sources(data, problems)
        known_sources = set(Source.objects.values_list("slug", flat=True)) | {
            s["slug"] for s in sources if isinstance(s.get("slug"), str)
        }
        destinations = check_destinations(data, known_sources, problems)
        if problems:  # one line each: JMESPath errors come with a caret line under the expression
            raise WorkspaceError([" ".join(p.split()) for p in problems])
        apply_sources(sources, report)
        apply_destinations(destinations, report)
    return report


def export_workspace() -> dict[str, Any]:
    """Return the workspace in the import format; secrets (source settings, credentials, insert secrets) are left
    out, function code is not a secret."""
    return {
        "functions": exported_functions(),
        "sources": exported_sources(),
        "destinations": exported_destinations(),
    }
