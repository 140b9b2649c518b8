"""The checks every outside value passes: operator keys, bad text, objects, long names, depth."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from tasks.core.checks import MAX_NAME_LENGTH, check_arguments, check_value
from tasks.errors import ArgumentError


def plain(user, course=None):  # type: ignore[no-untyped-def]
    return user, course


def annotated(filters: dict, options: Mapping[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return filters, options


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"user": {"$ne": "ada"}}, "holds the key '$ne'; operator keys are not accepted"),
        ({"user": [{"$where": "1"}]}, "holds the key '$where'"),
        ({"$where": "1"}, "argument name '$where' is an operator key"),
        ({"user": "ada\ud800"}, "not valid Unicode (a lone surrogate)"),
        ({"user": ["ok", {"k\udfff": 1}]}, "not valid Unicode"),
        ({"user": {"name": "ada"}}, "argument 'user' is an object; send a plain value"),
        ({"x" * 1_000_000: "1"}, f"longer than {MAX_NAME_LENGTH} characters"),
    ],
)
def test_outside_arguments_are_refused_with_a_short_reason(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError, match=re.escape(message)) as caught:
        check_arguments(plain, arguments)
    assert len(str(caught.value)) < 200  # a huge name or value is never echoed back whole


def test_plain_values_lists_and_astral_text_pass() -> None:
    check_arguments(plain, {"user": "ada 😀", "course": ["a", 1, 2.5, None, True]})
    check_arguments(plain, {"user": "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")})


def test_objects_pass_for_parameters_annotated_as_mappings() -> None:
    check_arguments(annotated, {"filters": {"course": "c1"}, "options": {"a": [1]}})
    with pytest.raises(ArgumentError, match="operator keys"):
        check_arguments(annotated, {"filters": {"course": {"$gt": ""}}})


def test_fed_values_are_checked_for_operators_text_and_depth() -> None:
    check_value("values", {"mean": 1.5, "by_user": {"ada": 2}})
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    for bad in ({"$ne": "ada"}, ["x\ud800"], deep):
        with pytest.raises(ArgumentError):
            check_value("values", bad)
