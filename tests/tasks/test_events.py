"""Events as read-only mappings with lazy properties, and parsing of what an LMS sends."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from tasks.authoring.events import Event
from tasks.errors import InvalidEvent
from tasks.pipeline.parsing import MAX_LISTED_REJECTIONS, MAX_REASON_CHARS, parse_events

RAW = {"user": "ada", "event_type": "problem_check", "agent": "Mozilla/5.0 Firefox/120"}


def browser(evt: Event) -> str:
    return "firefox" if "Firefox" in evt["agent"] else "other"


# Event -------------------------------------------------------------------------------
def test_an_event_reads_like_its_raw_dict() -> None:
    evt = Event(RAW)

    assert evt["user"] == "ada"
    assert len(evt) == 3
    assert list(evt) == list(RAW)
    assert dict(evt) == RAW
    assert evt.get("missing", "default") == "default"
    assert evt == RAW and "user" in evt and list(evt.items()) == list(RAW.items())  # the Mapping methods


def test_an_event_refuses_item_assignment() -> None:
    evt = Event(dict(RAW))

    with pytest.raises(TypeError):
        evt["user"] = "eve"  # type: ignore[index]
    assert evt["user"] == "ada"


def test_an_event_refuses_attribute_assignment() -> None:
    evt = Event(dict(RAW), {"browser": browser})

    with pytest.raises(TypeError, match="read-only"):
        evt.browser = "chrome"
    with pytest.raises(TypeError, match="read-only"):
        evt._raw = {}
    assert evt.browser == "firefox"


def test_event_returns_a_copy_of_the_raw_dict() -> None:
    raw = dict(RAW)
    evt = Event(raw)

    copied = evt.event
    copied["user"] = "eve"

    assert copied == {**RAW, "user": "eve"}
    assert evt["user"] == "ada"
    assert raw["user"] == "ada"


def test_a_property_is_computed_lazily_and_only_once() -> None:
    calls: list[str] = []

    def counted(evt: Event) -> str:
        calls.append(evt["user"])
        return evt["user"].upper()

    evt = Event(RAW, {"shout": counted})
    assert calls == []

    assert evt.shout == "ADA"
    assert evt.shout == "ADA"
    assert calls == ["ada"]


def test_properties_can_use_other_properties() -> None:
    evt = Event(RAW, {"browser": browser, "label": lambda e: f"{e['user']} on {e.browser}"})

    assert evt.label == "ada on firefox"


def test_an_unknown_property_lists_the_known_ones() -> None:
    evt = Event(RAW, {"browser": browser, "course": lambda e: None})

    with pytest.raises(AttributeError, match=r"no property 'colour' \(known: browser, course\)"):
        _ = evt.colour


def test_an_unknown_property_says_when_none_are_registered() -> None:
    with pytest.raises(AttributeError, match="none registered"):
        _ = Event(RAW).browser


def test_an_event_can_be_copied_and_pickled() -> None:
    evt = Event(RAW, {"browser": browser})

    for clone in (copy.copy(evt), copy.deepcopy(evt), pickle.loads(pickle.dumps(evt))):
        assert dict(clone) == RAW
        assert clone.browser == "firefox"


# parse_events -----------------------------------------------------------------------
ONE = {"user": "ada", "n": 1}
TWO = {"user": "bob", "n": 2}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(ONE, id="a dict"),
        pytest.param(json.dumps(ONE), id="a JSON object"),
        pytest.param(json.dumps(ONE).encode(), id="bytes"),
        pytest.param(bytearray(json.dumps(ONE).encode()), id="a bytearray"),
        pytest.param(f"  {json.dumps(ONE)}\n", id="JSON with surrounding space"),
    ],
)
def test_one_event_is_parsed(payload: Any) -> None:
    parsed = parse_events(payload)
    assert (parsed.events, parsed.rejected, parsed.verbatim) == ([ONE], [], False)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([ONE, TWO], id="a list"),
        pytest.param(json.dumps([ONE, TWO]), id="a JSON list"),
        pytest.param([json.dumps(ONE), json.dumps(TWO)], id="a list of JSON strings"),
        pytest.param([ONE, json.dumps(TWO)], id="a mixed list"),
        pytest.param(f"{json.dumps(ONE)}\n{json.dumps(TWO)}\n", id="NDJSON"),
        pytest.param(f"\n{json.dumps(ONE)}\n\n  \n{json.dumps(TWO)}\r\n\n", id="NDJSON with blank lines"),
        pytest.param(f"{json.dumps(ONE)}\n{json.dumps(TWO)}".encode(), id="NDJSON bytes"),
    ],
)
def test_several_events_are_parsed_in_order(payload: Any) -> None:
    assert parse_events(payload).events == [ONE, TWO]


def test_only_a_json_array_of_objects_can_be_stored_verbatim() -> None:
    assert parse_events(json.dumps([ONE, TWO])).verbatim
    assert not parse_events(json.dumps([ONE, json.dumps(TWO)])).verbatim
    assert not parse_events(json.dumps([ONE, 3])).verbatim
    assert not parse_events(f"{json.dumps(ONE)}\n{json.dumps(TWO)}").verbatim


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidEvent, match=r"not UTF-8 \(byte 10\)"):
        parse_events(b'{"user": "\xff"}')


@pytest.mark.parametrize("payload", ["", "   \n\t\n", b"", []])
def test_an_empty_body_is_refused(payload: Any) -> None:
    with pytest.raises(InvalidEvent, match=r"empty|no events"):
        parse_events(payload)


@pytest.mark.parametrize(
    ("payload", "index", "message"),
    [
        ([ONE, [1, 2]], 1, "item 1 is a list"),
        ([ONE, TWO, 3], 2, "item 2 is a number"),
        ('[{"a": 1}, "text"]', 1, "item 1 is not valid JSON"),
        ([ONE, json.dumps("text")], 1, "item 1 is a string"),
    ],
)
def test_an_item_that_is_not_an_object_is_rejected_by_index(payload: Any, index: int, message: str) -> None:
    parsed = parse_events(payload)
    assert [r["index"] for r in parsed.rejected] == [index]
    assert message in parsed.rejected[0]["error"]
    assert parsed.events and not parsed.verbatim


def test_refusals_are_counted_all_but_listed_first_and_short() -> None:
    parsed = parse_events([ONE, *range(5 * MAX_LISTED_REJECTIONS)])
    assert parsed.rejected_count == 5 * MAX_LISTED_REJECTIONS
    assert [r["index"] for r in parsed.rejected] == list(range(1, MAX_LISTED_REJECTIONS + 1))

    def about_ada(event: dict[str, Any]) -> str | None:
        return None if event["user"] == "ada" else f"is about user {event['user']!r}"

    parsed = parse_events([{"user": "ada"}, {"user": "x" * 100_000}], about_ada)  # a reason quoting a huge value
    assert parsed.rejected_count == 1 and len(parsed.rejected[0]["error"]) == MAX_REASON_CHARS
    assert parsed.rejected[0]["error"].startswith("item 1 is about user 'xxx")


@pytest.mark.parametrize(("payload", "message"), [("[null]", "item 0 is null"), ("true", "item 0 is a boolean")])
def test_a_request_without_any_valid_event_is_refused(payload: Any, message: str) -> None:
    with pytest.raises(InvalidEvent, match=f"no valid event in the request; {message}"):
        parse_events(payload)


def test_a_bad_json_line_is_rejected_by_line_number() -> None:
    parsed = parse_events(f"{json.dumps(ONE)}\n{json.dumps(TWO)}\n{{not json\n")
    assert parsed.events == [ONE, TWO]
    assert "line 3 is not valid JSON" in parsed.rejected[0]["error"]


def test_line_numbers_count_leading_blank_lines() -> None:
    parsed = parse_events(f"\n\n{json.dumps(ONE)}\n{{not json\n")
    assert "line 4 is not valid JSON" in parsed.rejected[0]["error"]


def test_a_single_line_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="the request body is not JSON"):
        parse_events("{not json")


LONE = "a lone surrogate"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param('[{"ok": 1}, {"name": "\\ud800"}]', "item 1", id="a high surrogate in a value"),
        pytest.param('[{"ok": 1}, {"name": "x\\uDFFFy"}]', "item 1", id="a low surrogate, upper case"),
        pytest.param('[{"ok": 1}, {"\\udc00": 1}]', "item 1", id="in a key"),
        pytest.param('[{"ok": 1}, {"a": [{"b": ["\\ude00\\ud83d"]}]}]', "item 1", id="nested, pair reversed"),
        pytest.param('[{"ok": 1}, "{\\"a\\": \\"\\\\ud800\\"}"]', "item 1", id="in an item given as JSON text"),
        pytest.param('{"ok": 1}\n{"a": "\\ud800"}\n', "line 2", id="JSON lines"),
    ],
)
def test_an_event_holding_a_lone_surrogate_is_rejected_by_index(body: str, where: str) -> None:
    for payload in (body, body.encode()):
        parsed = parse_events(payload)
        assert parsed.events == [{"ok": 1}] and not parsed.verbatim
        assert [r["index"] for r in parsed.rejected] == [1]
        assert parsed.rejected[0]["error"].startswith(f"{where} holds {LONE}")


def test_a_lone_surrogate_in_events_given_as_objects_is_rejected() -> None:
    parsed = parse_events([{"ok": 1}, {"a": "\ud800"}])
    assert parsed.events == [{"ok": 1}] and LONE in parsed.rejected[0]["error"]


def test_a_properly_paired_surrogate_escape_is_an_astral_character_and_accepted() -> None:
    parsed = parse_events('[{"emoji": "\\ud83d\\ude00", "\\uD83D\\uDE00": "key"}, {"text": "\\\\ud800 is not one"}]')
    assert parsed.events == [{"emoji": "\U0001f600", "\U0001f600": "key"}, {"text": "\\ud800 is not one"}]
    assert parsed.rejected == [] and parsed.verbatim
