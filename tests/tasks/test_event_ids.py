"""Event ids: typed, field-qualified, scoped by sender; occurrence ids for events without id or time."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest

from tasks import synthetic
from tasks.authoring.event_ids import NAMESPACE, Identifier, canonical_json, event_id, fingerprint, identify
from tasks.authoring.events import Event


def test_a_numeric_id_and_a_string_id_are_different_ids() -> None:
    assert event_id({"id": "777001"}) == "777001"
    assert event_id({"id": 777001}) == "~id.int:777001"


def test_an_event_id_field_never_collides_with_an_id_field() -> None:
    ids = {
        event_id({"id": "777001"}),
        event_id({"id": 777001}),
        event_id({"event_id": "777001"}),
        event_id({"event_id": 777001}),
        event_id({"id": "~event_id:777001"}),  # a string id that looks like a tagged one is escaped
        event_id({"id": "~id.int:777001"}),
    }
    assert len(ids) == 6
    assert event_id({"event_id": "abc"}) == "~event_id:abc"
    assert event_id({"id": "~event_id:777001"}) == "~id:~event_id:777001"


def test_ids_are_scoped_by_sender_and_readable() -> None:
    assert event_id({"id": "abc"}, sender="lms") == "~@lms:abc"
    assert event_id({"id": "abc"}, sender="other") == "~@other:abc"
    assert event_id({"id": "abc"}) == "abc"  # the anonymous scope
    assert event_id({"id": "b:c"}, sender="a") != event_id({"id": "c"}, sender="a:b")  # ':' in a name is escaped
    assert event_id({"id": "c"}, sender="a:b") == "~@a%3Ab:c"


def test_no_anonymous_id_is_a_named_senders_id() -> None:
    for event in ({"id": "e1"}, {"id": 5}, {"event_id": "e1"}, {"user": "a"}):
        named = event_id(event, sender="lms", occurrence="1-0/0")
        assert named.startswith("~@lms:")
        for anonymous in (named, named.removeprefix("~@"), "@" + named, "lms:e1"):  # whatever an anonymous id says
            assert event_id({"id": anonymous}) != named
            assert event_id({"id": anonymous}, sender="other") != named
    assert event_id({"id": "~@lms:e1"}) == "~id:~@lms:e1"  # escaped, as every string id starting with '~'


def test_an_event_without_id_or_time_is_one_occurrence_and_one_with_a_time_its_content() -> None:
    plain = {"user": "alice"}
    first = event_id(plain, occurrence="1764081912500-0/0")
    second = event_id(plain, occurrence="1764081912500-0/1")
    assert first == "~intake:1764081912500-0/0" and first != second
    assert event_id(plain, sender="lms", occurrence="1-0/3") == "~@lms:~intake:1-0/3"
    for timed in ({"user": "alice", "time": "2026-11-01T00:00:00"}, {"user": "alice", "timestamp": "2026-11-01"}):
        assert event_id(timed, occurrence="1-0/0") == event_id(timed, occurrence="2-0/5") == event_id(timed)
    assert event_id(plain) == event_id(dict(plain))  # without an occurrence (replays): its content
    assert event_id({"id": "x", "user": "alice"}, occurrence="1-0/0") == "x"


def test_unusable_ids_fall_back_like_no_id() -> None:
    for unusable in ({"id": ""}, {"id": True}, {"id": 1.5}, {"id": {"a": 1}}, {"id": "x" * 201}):
        assert event_id(unusable).count("-") == 4  # a UUID5 of the content
    assert event_id({"id": "", "event_id": 7}) == "~event_id.int:7"


def test_the_fingerprint_tells_events_apart_but_not_key_order() -> None:
    assert fingerprint(canonical_json({"a": 1, "b": 2})) == fingerprint(canonical_json({"b": 2, "a": 1}))
    assert fingerprint(canonical_json({"a": 1})) != fingerprint(canonical_json({"a": 2}))
    assert len(fingerprint("{}")) == 16


def test_an_event_made_without_an_id_derives_it_in_the_anonymous_scope() -> None:
    assert Event({"id": 5}).id == "~id.int:5"
    assert Event({"id": 5}, id="~@lms:~id.int:5").id == "~@lms:~id.int:5"


def test_identify_gives_the_event_id_and_the_fingerprint_at_once() -> None:
    for event in ({"id": 5}, {"user": "a", "time": "2026-11-01"}, {"user": "a"}):
        text = canonical_json(event)
        assert identify(event, text, sender="lms", occurrence="1-0/2") == (
            event_id(event, sender="lms", occurrence="1-0/2"),
            fingerprint(text),
        )
    timed = {"user": "a", "time": "2026-11-01"}
    assert event_id(timed) == str(uuid.uuid5(NAMESPACE, canonical_json(timed)))  # as before: ids stay stable


def test_content_ids_are_the_uuid5_of_the_canonical_json() -> None:
    for n in range(500):
        event = {"user": f"u{n}", "time": f"2026-11-01T00:00:{n % 60:02d}", "score": n / 7}
        assert event_id(event) == str(uuid.uuid5(NAMESPACE, canonical_json(event)))


def test_canonical_json_is_what_json_dumps_with_sorted_keys_gives() -> None:
    def dumps(value: object) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)

    events = []
    for activity in synthetic.simulate(synthetic.Config(students=5, days=2)):
        events += [synthetic.to_openedx(activity), synthetic.to_xapi(activity)]
    odd = {"z": datetime.date(2026, 1, 1), "\u00e9": "\u00fc\u2028\U0001f600", "a": [1e300, -0.0, float("nan"), 10**30]}
    for event in [*events, odd, {"b": {"d": True, "c": None}, "a": float("-inf")}, {}]:
        assert canonical_json(event) == dumps(event)
    with pytest.raises(TypeError):  # keys that do not sort, as with json.dumps
        canonical_json({"a": 1, 2: 3})


def test_an_identifier_gives_what_identify_gives() -> None:
    for sender in (None, "lms", "a:b%c"):
        for event in ({"id": "x"}, {"time": "t", "k": 1}, {"k": 1}, {"id": 5}, {"event_id": "~q"}, {"id": "~z"}):
            text = canonical_json(event)
            expected = identify(event, text, sender=sender, occurrence="17-3/4")
            assert Identifier(sender, "17-3")(event, text, 4) == expected
