"""How the server finds the fakes: every `Fake` subclass with a service that a module of the package defines.

Nothing lists the fakes, so a new vendor's fake is served by being there. What they declare shares three
namespaces (settings, counters, the sandbox's attributes), and a name declared twice would serve only one of its
owners, so `refuse_clashes` names both instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from typing import Any

from integrations.sandbox.fake import Fake


def discover(package: str = "integrations.sandbox") -> list[type[Fake]]:
    """The fakes of a package's modules and subpackages, in the order of their module names."""
    found: list[type[Fake]] = []
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__, f"{package}."):
        values = vars(importlib.import_module(module.name)).values()
        found += [value for value in values if _is_fake(value, module.name) and value not in found]
    return found


def _is_fake(value: Any, module: str) -> bool:
    """A `Fake` subclass with a service, defined in that module or below it rather than imported into it."""
    home = getattr(value, "__module__", "")
    defined_here = home == module or home.startswith(f"{module}.")
    return isinstance(value, type) and issubclass(value, Fake) and bool(value.service) and defined_here


def refuse_clashes(fakes: Sequence[type[Fake]], host: str, settings: Iterable[str], attributes: Iterable[str]) -> None:
    """Raise ValueError when two fakes, or a fake and the host, declare one setting, counter or attribute."""
    owners: dict[str, dict[str, str]] = {
        "setting": dict.fromkeys(settings, host),
        "counter": {},
        "attribute": dict.fromkeys(attributes, host),  # services and readers are served as sb.<name>
    }
    for fake in fakes:
        declared = {"setting": fake.settings, "counter": fake.counters, "attribute": (fake.service, *fake.readers)}
        for kind, names in declared.items():
            for name in names:
                owner = owners[kind].setdefault(name, fake.__name__)
                if owner != fake.__name__:
                    raise ValueError(f"{fake.__name__} declares the {kind} '{name}', which is already {owner}'s.")
