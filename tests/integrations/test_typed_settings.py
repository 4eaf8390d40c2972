"""Typed settings: a JSON object read into a dataclass, each bad field named in plain words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest

from integrations.typed_settings import parse_settings


@dataclass
class Sample:
    name: str
    mode: Literal["fast", "slow"] = "fast"
    ratio: float = 1.0
    flag: bool = False
    tags: list[str] | None = None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "config.name: required"),
        ({"name": None}, "config.name: required"),
        ({"name": "n", "mode": "medium"}, "config.mode: must be one of 'fast', 'slow', not 'medium'"),
        ({"name": "n", "ratio": "1"}, "config.ratio: must be a number, not a string"),
        ({"name": "n", "flag": "yes"}, "config.flag: must be true or false, not a string"),
        ({"name": "n", "tags": "a,b"}, "config.tags: must be a list of strings, not a string"),
        ({"name": "n", "tags": ["a", 2]}, "config.tags: must be a list of strings"),
        ({"name": "n", "speed": 3}, "config.speed: unknown setting"),
    ],
)
def test_parse_settings_names_the_bad_field_in_plain_words(data: dict[str, Any], problem: str) -> None:
    assert parse_settings(Sample, data, "config") == (None, [problem])


def test_parse_settings_builds_the_dataclass_from_good_data() -> None:
    parsed, problems = parse_settings(Sample, {"name": "n", "ratio": 2, "tags": ["a"]}, "config")

    assert problems == []
    assert parsed == Sample(name="n", ratio=2, tags=["a"])
