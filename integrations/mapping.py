"""Mappings and conditions: JSON objects whose string leaves are JMESPath expressions over the event."""

from __future__ import annotations

import functools
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult


class MappingError(Exception):
    """An expression that does not parse; the message names the field and the expression."""


@functools.lru_cache(maxsize=4096)
def compile_expression(expression: str) -> ParsedResult:
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise MappingError(f"{expression!r} is not a valid JMESPath expression: {exc}") from None
    except ValueError:  # jmespath reads a number with int(), which refuses more than 4,300 digits
        raise MappingError(f"{expression[:60]!r}… holds a number too long to read") from None
    except RecursionError:  # its parser recurses once per bracket
        raise MappingError(f"{expression[:60]!r}… nests too deeply to read") from None


def check_mapping(mapping: Any, where: str = "mapping") -> list[str]:
    """Return a problem per leaf that is not a valid expression."""
    if isinstance(mapping, dict):
        return [p for key, value in mapping.items() for p in check_mapping(value, f"{where}.{key}")]
    if isinstance(mapping, list):
        return [p for i, value in enumerate(mapping) for p in check_mapping(value, f"{where}[{i}]")]
    if isinstance(mapping, str):
        try:
            compile_expression(mapping)
        except MappingError as exc:
            return [f"{where}: {exc}"]
    return []


def apply_mapping(mapping: Any, event: dict[str, Any]) -> Any:
    """Build the object a mapping describes; string leaves are evaluated, other leaves are literals."""
    if isinstance(mapping, dict):
        return {key: apply_mapping(value, event) for key, value in mapping.items()}
    if isinstance(mapping, list):
        return [apply_mapping(value, event) for value in mapping]
    if isinstance(mapping, str):
        return compile_expression(mapping).search(event)
    return mapping


def evaluate(expression: str, event: dict[str, Any]) -> Any:
    return compile_expression(expression).search(event)
