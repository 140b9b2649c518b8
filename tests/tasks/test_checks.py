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


def typed(  # type: ignore[no-untyped-def]
    days: float = 7.0,
    count: int = 3,
    flag: bool = False,
    label: str | None = None,
    ids: list[int] | None = None,
    window=5,
    anything=None,
):
    return days, count, flag, label, ids, window, anything


def test_text_is_converted_to_the_declared_types() -> None:
    converted = check_arguments(
        typed,
        {"days": "3", "count": "-4", "flag": "Yes", "label": "x", "ids": ["1", 2], "window": "9", "anything": "k"},
    )
    assert converted == {
        "days": 3.0,
        "count": -4,
        "flag": True,
        "label": "x",
        "ids": [1, 2],
        "window": 9,
        "anything": "k",
    }
    assert type(converted["days"]) is float and type(converted["count"]) is int and type(converted["window"]) is int


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "On", " on "])
def test_bool_accepts_true_words_in_any_case(word: str) -> None:
    assert check_arguments(typed, {"flag": word})["flag"] is True


@pytest.mark.parametrize("word", ["false", "False", "0", "NO", "off", 0, False])
def test_bool_accepts_false_words_in_any_case(word: Any) -> None:
    assert check_arguments(typed, {"flag": word})["flag"] is False


def test_typed_values_pass_and_none_only_where_optional() -> None:
    assert check_arguments(typed, {"days": 2, "count": 5, "flag": True, "label": None, "ids": None}) == {
        "days": 2.0,
        "count": 5,
        "flag": True,
        "label": None,
        "ids": None,
    }
    assert check_arguments(typed, {"anything": {"a"}, "window": 7}) == {"anything": {"a"}, "window": 7}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("days", "abc", "argument 'days' got 'abc': expected float"),
        ("days", "nan", "NaN and infinities are not accepted"),
        ("days", "-Infinity", "NaN and infinities are not accepted"),
        ("days", float("nan"), "NaN and infinities are not accepted"),
        ("days", float("inf"), "NaN and infinities are not accepted"),
        ("days", "1e999", "NaN and infinities are not accepted"),
        ("days", 10**400, "expected float"),
        ("days", True, "expected float"),
        ("days", None, "expected float"),
        ("count", True, "argument 'count' got True: expected int"),
        ("count", 1.5, "expected int"),
        ("count", "1.5", "expected int"),
        ("count", "1_000", "expected int"),
        ("count", str(2**63), "out of the 64-bit range"),
        ("count", -(2**63) - 1, "out of the 64-bit range"),
        ("count", "9" * 100_000, "expected int"),
        ("count", ["1"], "expected int"),
        ("flag", "maybe", "expected bool"),
        ("flag", 2, "expected bool"),
        ("flag", ["true"], "expected bool"),
        ("label", 5, "expected str | None"),
        ("label", ["a"], "expected str | None"),
        ("ids", "1,2", "expected list[int] | None (send a JSON list)"),
        ("ids", [1, "x"], "argument 'ids' got 'x': expected list[int] | None"),
        ("window", "seven", "argument 'window' got 'seven': expected int"),
    ],
)
def test_values_that_do_not_convert_are_refused_naming_parameter_value_and_type(
    name: str, value: Any, message: str
) -> None:
    with pytest.raises(ArgumentError, match=re.escape(message)) as caught:
        check_arguments(typed, {name: value})
    assert len(str(caught.value)) < 200


def test_annotations_left_as_text_are_read() -> None:
    def later(n: int, ratio: float | None = None, ids: list[float] = []):  # type: ignore[no-untyped-def]  # noqa: B006
        return n, ratio, ids

    later.__annotations__["missing"] = "NotAType"
    assert check_arguments(later, {"n": "2", "ratio": "0.5", "ids": ["1"]}) == {"n": 2, "ratio": 0.5, "ids": [1.0]}
