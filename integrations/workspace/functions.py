"""The workspace file's functions: each checked with Function.clean() (the code loaded in a throwaway V8 context, a
syntax error with its line and column; the settings declaration item by item), then upserted by slug before the
sources and destinations that name them. A function whose code and settings are as stored keeps its version; a
change saves a new one, as the admin's save does. Code is exported (it is not a secret); setting values live on the
destinations and sources, whose secrets are never exported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from integrations.models import Function
from integrations.workspace.entries import open_entry
from integrations.workspace.report import ImportReport

FUNCTION_KEYS = ("slug", "name", "kind", "description", "code", "settings")  # in export order
TEXT = ("name", "kind", "description", "code")
NOTE = "imported from a workspace file"


@dataclass
class FunctionPlan:
    slug: str
    values: dict[str, Any]  # model field name -> value, only the keys the file gives


def _function_plan(index: int, spec: Any, problems: list[str]) -> FunctionPlan | None:
    """Check one function as the admin would save it (the stored one with the file's values on top)."""
    opened = open_entry("functions", index, spec, FUNCTION_KEYS, problems)
    if opened is None:
        return None
    where, found = opened
    slug = spec.get("slug")
    bad = {name for name in TEXT if name in spec and not isinstance(spec[name], str)}
    found += [f"{where}.{name}: must be a string" for name in sorted(bad)]
    values = {k: spec[k] for k in FUNCTION_KEYS if k in spec and k not in bad and k != "slug"}

    existing = Function.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    instance = existing if existing is not None else Function(name=slug if isinstance(slug, str) else "", slug=slug)
    for name, value in values.items():
        setattr(instance, name, value)
    try:
        exclude = [*bad, *([] if isinstance(slug, str) else ["slug", "name"])]
        instance.full_clean(exclude=exclude, validate_unique=False)  # the upsert is by slug
    except ValidationError as exc:  # the model's messages mostly start with their path: "code: line 2, …"
        found.extend(
            f"{where}.{message}" if message.startswith(name) else f"{where}.{name}: {message}"
            for name, messages in exc.message_dict.items()
            for message in messages
        )
    if found:
        problems.extend(found)
        return None
    return FunctionPlan(slug, values)


def check_functions(data: dict[str, Any], problems: list[str]) -> list[FunctionPlan]:
    specs = data.get("functions", [])
    if not isinstance(specs, list):
        problems.append("functions: must be a list")
        return []
    plans = [_function_plan(i, spec, problems) for i, spec in enumerate(specs)]
    slugs = [spec["slug"] for spec in specs if isinstance(spec, dict) and isinstance(spec.get("slug"), str)]
    repeated = sorted({s for s in slugs if slugs.count(s) > 1})
    if repeated:
        problems.append(f"functions: slug used more than once: {', '.join(repeated)}")
    return [p for p in plans if p is not None]


def apply_functions(plans: list[FunctionPlan], report: ImportReport, user: Any = None) -> None:
    """Create or update each function; save only what changed, so an unchanged one keeps its version."""
    for plan in plans:
        function = Function.objects.filter(slug=plan.slug).first()
        if function is None:
            Function(**{"name": plan.slug, "slug": plan.slug, **plan.values}).save(user=user, note=NOTE)
            report.functions_created.append(plan.slug)
            continue
        changed = [name for name, value in plan.values.items() if getattr(function, name) != value]
        if not changed:
            report.functions_unchanged.append(plan.slug)
            continue
        for name in changed:
            setattr(function, name, plan.values[name])
        function.save(user=user, note=NOTE)  # a new version when the code or the settings changed
        report.functions_updated.append((plan.slug, changed))


def exported_functions() -> list[dict[str, Any]]:
    """The functions in the file's format, code included; they hold no setting value."""
    return [
        {
            "slug": f.slug,
            "name": f.name,
            "kind": f.kind,
            "description": f.description,
            "code": f.code,
            "settings": f.settings,
        }
        for f in Function.objects.order_by("slug")
    ]
