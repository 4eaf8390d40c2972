"""Mappings: JSON objects whose string leaves are JMESPath expressions over the event; other leaves are literals."""

from __future__ import annotations

from typing import Any

import jmespath.exceptions
import pytest

from integrations.mapping import MappingError, apply_mapping, check_mapping, compile_expression, evaluate

EVENT: dict[str, Any] = {
    "type": "identify",
    "userId": "user-42",
    "traits": {"email": "ada@example.com", "firstName": "Ada", "tags": ["vip", "beta"]},
    "properties": {"email": "props@example.com", "revenue": 49.5},
    "context": {"traits": {"email": "context@example.com"}, "locale": "en-GB"},
}


def test_a_leaf_expression_reads_a_path_of_the_event() -> None:
    assert apply_mapping({"email": "traits.email"}, EVENT) == {"email": "ada@example.com"}


def test_a_nested_mapping_builds_the_same_shape() -> None:
    mapping = {"ContactKey": "userId", "Data": {"email": "traits.email", "locale": "context.locale"}}

    assert apply_mapping(mapping, EVENT) == {
        "ContactKey": "user-42",
        "Data": {"email": "ada@example.com", "locale": "en-GB"},
    }


def test_lists_in_a_mapping_are_mapped_item_by_item() -> None:
    assert apply_mapping({"ids": ["userId", "traits.firstName"]}, EVENT) == {"ids": ["user-42", "Ada"]}


def test_non_string_leaves_are_literals() -> None:
    mapping = {"count": 3, "ratio": 0.5, "active": True, "nothing": None, "ok": False}

    assert apply_mapping(mapping, EVENT) == mapping


def test_a_missing_path_gives_null() -> None:
    assert apply_mapping({"phone": "traits.phone", "deep": "a.b.c"}, EVENT) == {"phone": None, "deep": None}


def test_or_falls_back_to_the_next_expression() -> None:
    assert apply_mapping({"email": "traits.phone || properties.email"}, EVENT) == {"email": "props@example.com"}
    assert apply_mapping({"email": "traits.email || properties.email"}, EVENT) == {"email": "ada@example.com"}


def test_jmespath_functions_and_literals_work_in_leaves() -> None:
    mapping = {"tags": "join(',', traits.tags)", "source": "'cdphub'", "n": "length(traits.tags)"}

    assert apply_mapping(mapping, EVENT) == {"tags": "vip,beta", "source": "cdphub", "n": 2}


def test_a_mapping_that_is_one_expression_gives_that_value() -> None:
    assert apply_mapping("traits", EVENT) == EVENT["traits"]


def test_keys_with_dashes_or_spaces_need_quotes() -> None:
    event = {"properties": {"order-id": "o-1", "first name": "Ada"}}

    assert apply_mapping({"id": 'properties."order-id"', "name": 'properties."first name"'}, event) == {
        "id": "o-1",
        "name": "Ada",
    }


def test_check_mapping_accepts_a_good_mapping() -> None:
    assert check_mapping({"ContactKey": "userId", "Data": {"email": "traits.email"}, "n": 3, "l": ["userId"]}) == []


def test_check_mapping_names_each_bad_leaf_by_its_path() -> None:
    problems = check_mapping({"email": "traits.[", "Data": {"x": "userId", "y": "a..b"}, "list": ["userId", "=="]})

    assert [p.split(":")[0] for p in problems] == ["mapping.email", "mapping.Data.y", "mapping.list[1]"]
    assert "'traits.[' is not a valid JMESPath expression" in problems[0]


def test_check_mapping_can_name_its_root() -> None:
    assert check_mapping("traits.[", "filter.condition")[0].startswith("filter.condition: 'traits.[' is not a valid")


def test_compile_expression_raises_a_mapping_error_naming_the_expression() -> None:
    with pytest.raises(MappingError, match=r"^'userId \+ 1' is not a valid JMESPath expression"):
        compile_expression("userId + 1")


def test_compile_expression_is_cached() -> None:
    assert compile_expression("traits.email") is compile_expression("traits.email")


def test_evaluate_gives_the_value_of_one_expression() -> None:
    assert evaluate("properties.revenue > `40`", EVENT) is True
    assert evaluate("traits.email", EVENT) == "ada@example.com"
    assert evaluate("traits.phone", EVENT) is None


def test_evaluate_raises_a_mapping_error_on_a_bad_expression_and_a_jmespath_error_at_runtime() -> None:
    with pytest.raises(MappingError):
        evaluate("traits.[", EVENT)
    with pytest.raises(jmespath.exceptions.JMESPathTypeError):
        evaluate("length(properties.revenue)", EVENT)


@pytest.mark.parametrize("expression", ["1" * 5000, "a" + "[" * 5000, "(" * 5000 + "a" + ")" * 5000])
def test_an_expression_too_long_or_deep_for_jmespath_to_read_is_a_mapping_error(expression: str) -> None:
    """Found by the fuzz tests: jmespath's int() and its recursive parser raised errors a form did not expect."""
    with pytest.raises(MappingError):
        compile_expression(expression)
    assert check_mapping({"email": expression})
