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
        RegistrationError,
        match=r"@view got an unknown option 'colour'.*\['args', 'category', 'description', 'fallback', 'name', 'queue'",
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


# The original edX Insights' options ---------------------------------------------------
@pytest.mark.parametrize("decorator", [view, query])
def test_the_original_category_description_and_args_are_accepted(decorator: Any) -> None:
    @decorator(category="per student", description="Grades of one student.", args=["user", "mongodb"])
    def grades(mongodb: Any, user: str) -> None: ...

    assert only_declaration(grades).options == {"category": "per student", "description": "Grades of one student."}


@pytest.mark.parametrize("args", [["user"], ("user", "mongodb"), ["mongodb", "user"]])
def test_args_may_name_every_parameter_or_the_caller_supplied_ones(args: Any) -> None:
    @query(args=args)
    def grades(mongodb: Any, user: str) -> None: ...

    assert only_declaration(grades).kind == "query"


@pytest.mark.parametrize("args", [["course"], ["user", "mongodb", "course"], [], "user", [1]])
def test_args_that_do_not_name_the_parameters_are_refused(args: Any) -> None:
    with pytest.raises(RegistrationError, match=r"args"):

        @query(args=args)
        def grades(mongodb: Any, user: str) -> None: ...


def test_a_mismatched_args_names_the_parameters_and_says_to_drop_it() -> None:
    with pytest.raises(RegistrationError, match=r"args=\['course'\] does not match .*\['mongodb', 'user'\].*drop args"):

        @view(args=["course"])
        def grades(mongodb: Any, user: str) -> None: ...


@pytest.mark.parametrize("option", ["category", "description"])
@pytest.mark.parametrize("value", ["", "  ", 3, None])
def test_category_and_description_must_be_text(option: str, value: Any) -> None:
    with pytest.raises(RegistrationError, match=f"{option} must be non-empty text"):
        query(**{option: value})


def test_an_event_property_takes_the_original_description() -> None:
    @event_property(name="agent", description="Who did it.")
    def agent(evt: Any) -> Any:
        return evt.get("user")

    assert only_declaration(agent).options == {"description": "Who did it."}


def test_category_is_not_an_event_handler_option() -> None:
    with pytest.raises(RegistrationError, match="@event_handler got an unknown option 'category'"):
        event_handler(category="global")


def test_source_queue_is_the_original_name_for_queue() -> None:
    @event_handler(source_queue="video")
    def on_video(events: list[Any]) -> None: ...

    declaration = only_declaration(on_video)
    assert declaration.queue == "video"
    assert "source_queue" not in declaration.options


def test_queue_and_source_queue_together_are_refused() -> None:
    with pytest.raises(RegistrationError, match="source_queue is the original's name for queue; give one"):
        event_handler(queue="a", source_queue="b")


def test_an_invalid_source_queue_is_refused_by_its_name() -> None:
    with pytest.raises(RegistrationError, match="source_queue must be a name"):
        event_handler(source_queue="has space")


def test_single_process_is_recorded() -> None:
    @event_handler(single_process=True)
    def tally(events: list[Any]) -> None: ...

    assert only_declaration(tally).options == {"single_process": True}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"single_process": True, "per_user": True}, "choose one of per_user, per_resource, single_process"),
        ({"per_user": True, "per_resource": True}, "choose one of per_user, per_resource, single_process"),
        ({"single_process": True, "queue": "events"}, "a single_process handler runs on shard queues; drop queue="),
        ({"single_process": True, "source_queue": "x"}, "a single_process handler runs on shard queues"),
        ({"single_process": "yes"}, "single_process must be True or False"),
        ({"batch": 0}, "batch must be True or False"),
    ],
)
def test_conflicting_or_malformed_handler_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        event_handler(**options)


def test_a_handler_called_per_event_takes_events_or_event() -> None:
    @event_handler(batch=False)
    def as_in_the_original(events: list[Any], cache: Any) -> None: ...

    @event_handler(batch=False)
    def one_event(event: Any, mongodb: Any) -> None: ...

    assert only_declaration(as_in_the_original).options == {"batch": False}
    assert only_declaration(one_event).options == {"batch": False}


def test_only_a_handler_called_per_event_may_take_event() -> None:
    with pytest.raises(RegistrationError, match=r"must take an 'events' parameter and .* it takes \['event'\]"):

        @event_handler(batch=True)
        def one_event(event: Any) -> None: ...

    with pytest.raises(RegistrationError, match=r"'events' parameter \(or, with batch=False, 'event'\)"):

        @event_handler(batch=False)
        def two(event: Any, events: list[Any]) -> None: ...
