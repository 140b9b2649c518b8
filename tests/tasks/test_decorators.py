"""The authoring decorators: what they record, and what they refuse at decoration time."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import event_handler, event_property, query, view
from tasks.authoring.decorators import Declaration, declarations_of
from tasks.errors import RegistrationError


def only_declaration(func: Any) -> Declaration:
    (declaration,) = declarations_of(func)
    return declaration


# Names -------------------------------------------------------------------------------
def test_the_name_defaults_to_the_function_name() -> None:
    @query
    def get_grades(course: str) -> list[Any]:
        return []

    assert only_declaration(get_grades).names == ("get_grades",)


def test_a_name_option_replaces_the_function_name() -> None:
    @view(name="grades-dashboard")
    def render() -> str:
        return ""

    assert only_declaration(render).names == ("grades-dashboard",)


def test_a_list_of_names_declares_aliases_with_the_first_as_primary() -> None:
    @query(name=["grades", "get_grades", "course.grades"])
    def grades() -> list[Any]:
        return []

    assert only_declaration(grades).names == ("grades", "get_grades", "course.grades")


@pytest.mark.parametrize("name", ["", "1grades", "has space", "slash/name", "ü", 42, [], ["ok", 7], ["a", "a"]])
def test_an_invalid_name_is_refused(name: Any) -> None:
    with pytest.raises(RegistrationError, match="name"):

        @query(name=name)
        def grades() -> None: ...


# Bare and called forms ---------------------------------------------------------------
@pytest.mark.parametrize("decorator", [view, query])
def test_the_bare_and_the_called_forms_declare_the_same_thing(decorator: Any) -> None:
    def bare() -> int:
        return 1

    def called() -> int:
        return 1

    decorator(bare)
    decorator()(called)

    assert only_declaration(bare).kind == only_declaration(called).kind
    assert only_declaration(bare).names == ("bare",)
    assert only_declaration(called).names == ("called",)


def test_the_decorated_function_is_the_same_plain_callable() -> None:
    def per_user(user: str, cache: Any = None) -> str:
        return f"hello {user}"

    assert query(per_user) is per_user
    assert view(name="hello")(per_user) is per_user
    assert per_user("ada") == "hello ada"


def test_every_decorator_of_a_function_is_recorded() -> None:
    @view(name="overview")
    @query(name="summary", queue="reports")
    def summary() -> dict[str, Any]:
        return {}

    kinds = {d.kind: d for d in declarations_of(summary)}
    assert kinds["query"].names == ("summary",)
    assert kinds["query"].queue == "reports"
    assert kinds["view"].names == ("overview",)
    assert kinds["view"].queue is None


def test_fallback_and_queue_options_are_recorded() -> None:
    @query(fallback=True, queue="slow.queries")
    def generic() -> None: ...

    declaration = only_declaration(generic)
    assert declaration.fallback is True
    assert declaration.queue == "slow.queries"


def test_an_undecorated_function_has_no_declarations() -> None:
    def plain() -> None: ...

    assert declarations_of(plain) == []


# Options -----------------------------------------------------------------------------
def test_a_misspelt_option_is_refused_with_a_did_you_mean_hint() -> None:
    with pytest.raises(RegistrationError, match=r"unknown option 'nmae'; did you mean 'name'\?"):
        query(nmae="x")


def test_an_unknown_option_without_a_close_match_lists_the_options() -> None:
    with pytest.raises(
        RegistrationError, match=r"@view got an unknown option 'colour'.*\['fallback', 'name', 'queue'\]"
    ):
        view(colour="red")


def test_an_option_of_another_decorator_is_refused() -> None:
    with pytest.raises(RegistrationError, match="@event_handler got an unknown option 'name'"):
        event_handler(name="on_event")


@pytest.mark.parametrize("queue", ["", "has space", "q/1", 7])
def test_an_invalid_queue_name_is_refused(queue: Any) -> None:
    with pytest.raises(RegistrationError, match="queue must be a name"):
        query(queue=queue)


def test_decorating_something_that_is_not_a_function_is_refused() -> None:
    with pytest.raises(RegistrationError, match="decorates functions"):
        query("get_grades")  # a name passed positionally instead of name=


# Event handlers and properties -------------------------------------------------------
def test_an_event_handler_takes_events_and_injected_parameters() -> None:
    @event_handler(queue="events")
    def store(events: list[Any], mongodb: Any, cache: Any) -> None: ...

    assert only_declaration(store).kind == "handler"


def test_an_event_handler_without_events_is_refused() -> None:
    with pytest.raises(RegistrationError, match="must take an 'events' parameter"):

        @event_handler
        def store(mongodb: Any) -> None: ...


def test_an_event_handler_with_a_caller_parameter_is_refused() -> None:
    with pytest.raises(RegistrationError, match=r"it takes \['events', 'user'\]"):

        @event_handler
        def store(events: list[Any], user: str) -> None: ...


def test_an_event_property_takes_the_event() -> None:
    @event_property(name="agent")
    def user_agent(evt: Any) -> str:
        return str(evt["agent"])

    assert only_declaration(user_agent).names == ("agent",)
    assert user_agent({"agent": "firefox"}) == "firefox"


@pytest.mark.parametrize(
    "signature",
    ["def prop(): ...", "def prop(evt, other): ...", "def prop(evt, cache): ...", "def prop(cache): ..."],
)
def test_an_event_property_must_take_exactly_one_parameter(signature: str) -> None:
    namespace: dict[str, Any] = {}
    exec(signature, namespace)
    with pytest.raises(RegistrationError, match="must take exactly one parameter"):
        event_property(namespace["prop"])


@pytest.mark.parametrize("name", ["get", "keys", "items", "event", "_hidden"])
def test_an_event_property_cannot_shadow_what_events_already_have(name: str) -> None:
    with pytest.raises(RegistrationError, match="taken by the event itself"):
        event_property(name=name)(lambda evt: 1)


def test_fallback_must_be_a_boolean() -> None:
    with pytest.raises(RegistrationError, match="fallback must be True or False"):
        query(fallback="no")
