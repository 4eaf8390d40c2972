"""Registries found, not written: every module of a package is read for the classes it declares, so a new
destination vendor or source function is one new module that nothing else has to list."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")


def discover(package: str, base: type[T], name: str) -> dict[str, type[T]]:
    """The subclasses of `base` defined in `package`'s modules (subpackages included) that give `name` a value
    in their own class body, keyed by that value and ordered by their `label`."""
    found: dict[str, type[T]] = {}
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if not (isinstance(value, type) and issubclass(value, base) and value.__module__ == module.__name__):
                continue
            key = value.__dict__.get(name)
            if not isinstance(key, str):
                continue  # a shared base class (SFMC's), not a registered one
            if key in found:
                raise ImproperlyConfigured(f"{found[key].__module__} and {module.__name__} both declare {name} {key!r}")
            found[key] = value
    return dict(sorted(found.items(), key=lambda item: str(getattr(item[1], "label", item[0])).lower()))


def found_on_first_use(package: str, attribute: str, base: type[T], name: str) -> Callable[[str], Any]:
    """A package's module-level __getattr__ that makes `attribute` the registry of `base` subclasses, found on
    first use rather than at import: the modules it reads import the package's own base class first."""

    def getattr_(wanted: str) -> Any:
        if wanted != attribute:
            raise AttributeError(f"module {package!r} has no attribute {wanted!r}")
        registry = discover(package, base, name)
        setattr(sys.modules[package], attribute, registry)  # later look-ups find the plain dict itself
        return registry

    return getattr_
