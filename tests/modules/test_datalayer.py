"""The data layer: Open edX events and xAPI statements read as the generic vocabulary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

import modules.datalayer
from modules.datalayer import NAMES, is_xapi, openedx, vocabulary, xapi
from tasks.authoring.events import Event
from tasks.core.registry import Registry

COURSE = "course-v1:MITx+6.00x+2026_T4"
VIDEO = "block-v1:MITx+6.00x+2026_T4+type@video+block@9b2fcf5f3e6c4a2a8e2a4a9d4f6e1c11"
PROBLEM = "block-v1:MITx+6.00x+2026_T4+type@problem+block@4d1b8e5b7b3c4d2a9c1f0e8d7c6b5a40"
PAGE = f"https://courses.example.org/courses/{COURSE}/courseware/week1/lecture1/2"
WHEN = datetime(2026, 11, 2, 19, 4, 31, 512345, tzinfo=UTC)


@pytest.fixture(scope="module")
def properties() -> dict[str, Any]:
    """The event properties as the application registers them."""
    registry = Registry()
    registry.add_module("datalayer", modules.datalayer)
    return {name: registry.get("property", name).func for name in registry.names("property")}


def read(raw: Any, properties: dict[str, Any]) -> dict[str, Any]:
    """The six properties of a raw event, read through ``Event`` attributes."""
    evt = Event(raw, properties)
    return {name: getattr(evt, name) for name in NAMES}


def browser(event_type: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An Open edX browser event as the LMS logs it: ``event`` is a JSON string."""
    return {
        "username": "ada",
        "event_type": event_type,
        "name": event_type,
        "event_source": "browser",
        "context": {"course_id": COURSE, "user_id": 42, "org_id": "MITx", "path": "/event"},
        "time": "2026-11-02T19:04:31.512345+00:00",
        "page": PAGE,
        "host": "courses.example.org",
        "ip": "10.0.0.7",
        "agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "session": "b1d8c0c2f0c54a7e9f7b0ef4ed0f5e11",
        "event": json.dumps(payload),
        **fields,
    }


def server(event_type: str, payload: dict[str, Any], path: str, **fields: Any) -> dict[str, Any]:
    """An Open edX server event: ``event`` is a dict and ``page`` is null."""
    raw = browser(event_type, {}, event_source="server", page=None, event=payload)
    raw["context"] = {**raw["context"], "path": path}
    return {**raw, **fields}


def statement(verb: str, obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An xAPI statement by a learner of the course."""
    return {
        "id": "0b8a7a4e-3c5d-4f2e-9a1b-6c7d8e9f0a1b",
        "actor": {"objectType": "Agent", "account": {"homePage": "https://courses.example.org", "name": "ada"}},
        "verb": {"id": verb, "display": {"en-US": verb.rsplit("/", 1)[-1]}},
        "object": {"objectType": "Activity", **obj},
        "context": {"contextActivities": {"parent": [{"id": f"https://courses.example.org/courses/{COURSE}"}]}},
        "timestamp": "2026-11-02T19:04:31.512345Z",
        "version": "1.0.3",
        **fields,
    }


def video_object() -> dict[str, Any]:
    return {"id": f"https://courses.example.org/xblock/{VIDEO}", "definition": {"type": xapi.VIDEO_TYPE}}


def with_length(raw: dict[str, Any], length: float) -> dict[str, Any]:
    raw["context"]["extensions"] = {xapi.LENGTH: length}
    return raw


# Open edX -------------------------------------------------------------------------------
OPENEDX_CASES = [
    (
        browser("load_video", {"id": VIDEO, "code": "html5", "duration": 412.5}),
        "loaded", VIDEO, {"duration": 412.5},
    ),
    (
        browser("play_video", {"id": VIDEO, "currentTime": 12.4, "code": "html5", "duration": 412.5}),
        "played", VIDEO, {"position": 12.4, "duration": 412.5},
    ),
    (
        browser("pause_video", {"id": VIDEO, "currentTime": 95.03, "code": "html5"}),
        "paused", VIDEO, {"position": 95.03},
    ),
    (
        browser("seek_video", {"id": VIDEO, "old_time": 95.03, "new_time": 60, "type": "onSlideSeek", "code": "html5"}),
        "seeked", VIDEO, {"seek_from": 95.03, "seek_to": 60},
    ),
    (
        browser("stop_video", {"id": VIDEO, "currentTime": 412.5, "code": "html5", "duration": 412.5}),
        "stopped", VIDEO, {"position": 412.5, "duration": 412.5},
    ),
    (
        server(
            "problem_check",
            {"problem_id": PROBLEM, "success": "incorrect", "grade": 1, "max_grade": 3, "attempts": 2,
             "answers": {"4d1b_2_1": "choice_2"}, "correct_map": {}, "state": {}},
            f"/courses/{COURSE}/xblock/{PROBLEM}/handler/xmodule_handler/problem_check",
        ),
        "answered", PROBLEM, {"success": False, "score": 1, "max_score": 3, "attempt": 2},
    ),
    (
        server("problem_check", {"problem_id": PROBLEM, "success": "correct", "grade": 3, "max_grade": 3,
                                 "attempts": 3}, "/courses/x/xblock/y/handler/xmodule_handler/problem_check"),
        "answered", PROBLEM, {"success": True, "score": 3, "max_score": 3, "attempt": 3},
    ),
    (
        browser("edx.ui.lms.sequence.next_selected",
                {"current_tab": 1, "tab_count": 4, "target_tab": 2, "widget_placement": "top", "id": "seq"}),
        "viewed", PAGE, {},
    ),
    (browser("seq_goto", {"old": 1, "new": 3, "id": "seq"}), "viewed", PAGE, {}),
    (browser("seq_next", {"old": 1, "new": 2, "id": "seq"}), "viewed", PAGE, {}),
    (
        server(f"/courses/{COURSE}/courseware/week1/", {"GET": {}, "POST": {}}, f"/courses/{COURSE}/courseware/week1/"),
        "viewed", f"https://courses.example.org/courses/{COURSE}/courseware/week1/", {},
    ),
    (
        server("edx.course.enrollment.activated", {"course_id": COURSE, "user_id": 42, "mode": "audit"},
               "/api/enrollment/v1/enrollment"),
        "enrolled", COURSE, {},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "verb", "obj", "result"), OPENEDX_CASES, ids=lambda v: None)
def test_open_edx_events_read_as_the_vocabulary(
    raw: dict[str, Any], verb: str, obj: str, result: dict[str, Any], properties: dict[str, Any]
) -> None:
    expected = {"agent": "ada", "verb": verb, "object": obj, "course": COURSE, "timestamp": WHEN, "result": result}
    assert not is_xapi(raw)
    assert read(raw, properties) == expected
    assert vocabulary(raw) == expected


def test_browser_event_payload_is_parsed_from_its_json_string() -> None:
    raw = browser("play_video", {"id": VIDEO, "currentTime": 3})  # "event" is the JSON text of the payload
    assert openedx.payload(raw) == {"id": VIDEO, "currentTime": 3}
    assert openedx.payload({"event": {"id": VIDEO}}) == {"id": VIDEO}


def test_browser_problem_check_is_not_a_second_answer() -> None:
    # The browser logs the submitted form as a query string; only the server event is graded.
    raw = browser("problem_check", {}, event="input_4d1b_2_1=choice_2")
    assert openedx.verb(raw) == "other"
    assert openedx.object(raw) is None
    assert openedx.result(raw) == {}


def test_open_edx_fallbacks() -> None:
    raw = browser("play_video", {"id": VIDEO, "currentTime": "7.5"}, username="", context={"user_id": 42})
    assert openedx.agent(raw) == "42"
    assert openedx.course(raw) == COURSE  # from the page URL
    assert openedx.result(raw) == {"position": 7.5}
    enrollment = server("edx.course.enrollment.activated", {"course_id": COURSE}, "/change_enrollment", context={})
    assert openedx.course(enrollment) == COURSE == openedx.object(enrollment)
    assert openedx.verb(server("/courses/c/xblock/b/handler/xmodule_handler/problem_get", {}, "/x")) == "other"
    assert openedx.verb(server("/event", {}, "/event")) == "other"
    assert openedx.verb({"event_type": "edx.video.played"}) == "played"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-02T19:04:31.512345+00:00", WHEN),
        ("2026-11-02T19:04:31.512345Z", WHEN),
        ("2026-11-02T21:04:31.512345+02:00", WHEN),
        ("2026-11-02T19:04:31.5123456Z", WHEN),
        ("2026-11-02T19:04:31", WHEN.replace(microsecond=0)),
        ("2026-11-02T19:04:31Z", WHEN.replace(microsecond=0)),
        ("2026-11-02T19:04:31.5+00:00", WHEN.replace(microsecond=500000)),
        ("yesterday", None),
        ("", None),
        (1762110271, None),
        (None, None),
    ],
)
def test_timestamps_are_aware_utc(text: Any, expected: datetime | None) -> None:
    parsed = openedx.parse_time(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0


# xAPI -----------------------------------------------------------------------------------
V = "https://w3id.org/xapi/video/"
ADL = "http://adlnet.gov/expapi/verbs/"
PROBLEM_OBJECT = {
    "id": f"https://courses.example.org/xblock/{PROBLEM}",
    "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction", "interactionType": "choice"},
}
XAPI_CASES = [
    (
        statement(ADL + "experienced", {"id": PAGE, "definition": {"type": "http://activitystrea.ms/schema/1.0/page"}}),
        "viewed", PAGE, {},
    ),
    (with_length(statement(V + "verbs/initialized", video_object()), 412.5), "loaded", VIDEO, {"duration": 412.5}),
    (
        with_length(statement(V + "verbs/played", video_object(), result={"extensions": {V + "extensions/time": 12.4}}),
                    412.5),
        "played", VIDEO, {"position": 12.4, "duration": 412.5},
    ),
    (
        statement(V + "verbs/paused", video_object(), result={"extensions": {V + "extensions/time": 95.03}}),
        "paused", VIDEO, {"position": 95.03},
    ),
    (
        statement(V + "verbs/seeked", video_object(),
                  result={"extensions": {V + "extensions/time-from": 95.03, V + "extensions/time-to": 60}}),
        "seeked", VIDEO, {"seek_from": 95.03, "seek_to": 60},
    ),
    (
        with_length(statement(ADL + "completed", video_object(),
                              result={"completion": True, "extensions": {V + "extensions/time": 412.5}}), 412.5),
        "stopped", VIDEO, {"position": 412.5, "duration": 412.5},
    ),
    (
        statement(ADL + "answered", PROBLEM_OBJECT,
                  result={"success": False, "score": {"raw": 1, "max": 3, "scaled": 0.3333},
                          "extensions": {"http://id.tincanapi.com/extension/attempt-id": 2}}),
        "answered", PROBLEM, {"success": False, "score": 1, "max_score": 3, "attempt": 2},
    ),
    (
        statement(ADL + "registered", {"id": f"https://courses.example.org/courses/{COURSE}",
                                       "definition": {"type": xapi.COURSE_TYPE}}),
        "enrolled", COURSE, {},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "verb", "obj", "result"), XAPI_CASES, ids=lambda v: None)
def test_xapi_statements_read_as_the_vocabulary(
    raw: dict[str, Any], verb: str, obj: str, result: dict[str, Any], properties: dict[str, Any]
) -> None:
    expected = {"agent": "ada", "verb": verb, "object": obj, "course": COURSE, "timestamp": WHEN, "result": result}
    assert is_xapi(raw)
    assert read(raw, properties) == expected
    assert vocabulary(raw) == expected


def test_xapi_fallbacks() -> None:
    raw = statement(ADL + "completed", {"id": "https://courses.example.org/courses/x/about"})
    assert xapi.verb(raw) == "other"  # completed means "stopped" only on a video
    raw["actor"] = {"mbox": "mailto:ada@example.org"}
    assert xapi.agent(raw) == "ada@example.org"
    raw["context"] = {"extensions": {"https://w3id.org/xapi/openedx/extensions/course_id": COURSE}}
    assert xapi.course(raw) == COURSE
    raw["context"] = {"contextActivities": {"parent": {"id": f"https://lms.example/course/{COURSE}"}}}
    assert xapi.course(raw) == COURSE  # a single parent object, and Open edX's /course/ IRIs
    assert xapi.timestamp({"stored": "2026-11-02T19:04:31.512345Z"}) == WHEN
    assert xapi.object({"object": {"id": "https://lms.example/xblock/block-v1:A%2BB"}}) == "block-v1:A+B"
    assert xapi.result({"result": {"score": {"raw": True}, "success": "yes", "extensions": {xapi.ATTEMPT: "2"}}}) == {
        "attempt": 2
    }


# Malformed events ---------------------------------------------------------------------------
MALFORMED: list[Any] = [
    {},
    {"event_type": None, "time": 5, "context": "nope", "event": "{not json"},
    {"event_type": "play_video", "event": "[1, 2]", "username": ["ada"], "page": 3},
    {"event_type": "play_video", "event": json.dumps({"id": {"x": 1}, "currentTime": "soon", "duration": "NaN"})},
    {"event_type": "seek_video", "event": json.dumps({"old_time": True, "new_time": None})},
    {"event_type": "problem_check", "event_source": "server", "event": {"success": 1, "grade": "x", "attempts": 1.5}},
    {"event_type": "problem_check", "event": None, "context": {"course_id": 7, "user_id": True}},
    {"event_type": "edx.course.enrollment.activated", "event": 12, "time": "2026-13-40T99:00:00Z"},
    {"event_type": "/courses/", "host": None, "page": None},
    {"event": "[" * 100000},
    {"actor": {}, "verb": {}},
    {"actor": {"account": "ada", "mbox": 5}, "verb": {"id": 3}, "object": "video", "context": [], "result": "ok"},
    {"actor": {"account": {"name": None}}, "verb": {"id": ADL + "answered"}, "object": {"id": None},
     "result": {"score": "full", "extensions": []}, "context": {"contextActivities": {"parent": []}}},
    {"actor": {"mbox": "mailto:"}, "verb": {"id": ADL + "registered"}, "object": {"id": "x", "definition": 1},
     "context": {"contextActivities": {"parent": ["x"]}, "extensions": {"a/course_id": 5}}, "timestamp": []},
    {"actor": {"name": "x"}, "verb": {"id": V + "verbs/played"}, "object": {"id": "https://l/xblock/"},
     "result": {"extensions": {V + "extensions/time": float("inf")}}},
]  # fmt: skip


@pytest.mark.parametrize("raw", MALFORMED, ids=lambda v: None)
def test_malformed_events_never_raise(raw: dict[str, Any], properties: dict[str, Any]) -> None:
    values = read(raw, properties)
    assert values["verb"] in {"viewed", "played", "paused", "seeked", "stopped", "loaded", "answered", "enrolled",
                              "other"}  # fmt: skip
    assert isinstance(values["result"], dict)
    for name in ("agent", "object", "course"):
        assert values[name] is None or isinstance(values[name], str)
    assert values["timestamp"] is None or values["timestamp"].tzinfo is not None
    assert values["agent"] in (None, "ada")


@pytest.mark.parametrize("value", [None, 3, "text", ["a"], object()])
def test_the_pure_functions_take_anything(value: Any) -> None:
    for reader in (openedx, xapi):
        assert {name: getattr(reader, name)(value) for name in NAMES} == {
            "agent": None, "verb": "other", "object": None, "course": None, "timestamp": None, "result": {}
        }  # fmt: skip
    assert not is_xapi(value)


def test_the_properties_are_registered_with_their_docs(properties: dict[str, Any]) -> None:
    assert set(NAMES) <= set(properties)
    assert all(properties[name].__doc__ for name in NAMES)


def test_a_time_out_of_range_in_utc_is_no_timestamp() -> None:
    from modules.datalayer.openedx import parse_time

    assert parse_time("0001-01-01T00:00:00+05:00") is None
    assert parse_time("9999-12-31T23:59:59-05:00") is None
