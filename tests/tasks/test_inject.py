"""Binding a caller's arguments to a function whose other parameters the framework injects."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.authoring.injection import INJECTED, bind_arguments
from tasks.errors import ArgumentError


def per_student(course: str, user: str, limit: int = 10, mongodb: Any = None) -> None: ...


def with_params(course: str, params: Any) -> None: ...


def with_kwargs(course: str, **kwargs: Any) -> None: ...


def bind(func: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return bind_arguments("query 'grades'", func, args, kwargs)


def test_positional_arguments_bind_in_order() -> None:
    assert bind(per_student, "c1", "ada") == ({"course": "c1", "user": "ada"}, {})


def test_keyword_arguments_bind_by_name() -> None:
    assert bind(per_student, user="ada", course="c1", limit=3) == ({"course": "c1", "user": "ada", "limit": 3}, {})


def test_positional_and_keyword_arguments_combine() -> None:
    assert bind(per_student, "c1", user="ada") == ({"course": "c1", "user": "ada"}, {})


def test_injected_parameters_do_not_take_positional_arguments() -> None:
    with pytest.raises(ArgumentError, match=r"takes 3 positional argument\(s\) \['course', 'user', 'limit'\], got 4"):
        bind(per_student, "c1", "ada", 3, "a database")


def test_an_argument_given_twice_is_refused() -> None:
    with pytest.raises(ArgumentError, match="got argument 'course' twice"):
        bind(per_student, "c1", course="c2", user="ada")


def test_a_missing_argument_is_named() -> None:
    with pytest.raises(ArgumentError, match="query 'grades' is missing argument 'user'"):
        bind(per_student, "c1")


def test_an_unexpected_argument_is_named() -> None:
    with pytest.raises(ArgumentError, match="got an unexpected argument 'colour'"):
        bind(per_student, "c1", "ada", colour="red")


@pytest.mark.parametrize("func", [with_params, with_kwargs])
def test_leftover_arguments_go_to_params_when_the_function_takes_them(func: Any) -> None:
    assert bind(func, "c1", colour="red", size=3) == ({"course": "c1"}, {"colour": "red", "size": 3})


@pytest.mark.parametrize("name", sorted(INJECTED))
@pytest.mark.parametrize(("func", "args"), [(per_student, ("c1", "ada")), (with_params, ("c1",))])
def test_a_caller_value_for_an_injected_name_is_dropped(name: str, func: Any, args: tuple[str, ...]) -> None:
    bound, leftovers = bind(func, *args, **{name: "from the caller"})

    assert name not in bound
    assert name not in leftovers
