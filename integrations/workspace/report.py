"""What an import did, row by row (ImportReport), or why it did nothing (WorkspaceError)."""

from __future__ import annotations

from dataclasses import dataclass, field


class WorkspaceError(Exception):
    """The file cannot be imported; `problems` lists every bad field, nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    destinations_created: list[str] = field(default_factory=list)
    destinations_updated: list[tuple[str, list[str]]] = field(default_factory=list)
    destinations_unchanged: list[str] = field(default_factory=list)
    functions_created: list[str] = field(default_factory=list)
    functions_updated: list[tuple[str, list[str]]] = field(default_factory=list)
    functions_unchanged: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per function, then per source, then per destination (the order they are imported in); changed
        fields by name, never by value."""
        out = [f"created function {slug}" for slug in self.functions_created]
        out += [f"updated function {slug} ({', '.join(names)})" for slug, names in self.functions_updated]
        out += [f"unchanged function {slug}" for slug in self.functions_unchanged]
        out += [
            f"{verb} source {slug}"
            for verb, slugs in (("created", self.created), ("updated", self.updated), ("unchanged", self.unchanged))
            for slug in slugs
        ]
        out += [f"created destination {slug}" for slug in self.destinations_created]
        out += [f"updated destination {slug} ({', '.join(names)})" for slug, names in self.destinations_updated]
        out += [f"unchanged destination {slug}" for slug in self.destinations_unchanged]
        return out
