"""Synthetic LMS activity: deterministic, realistic, and the same in both formats."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import modules.datalayer
from config.settings import ROOT
from modules.datalayer import vocabulary
from tasks.authoring.event_ids import event_id
from tasks.authoring.events import Event
from tasks.core.registry import Registry
from tasks.ops.cli import main
from tasks.synthetic import Activity, Config, generate_files, simulate, to_openedx, to_xapi, write_jsonl

VERBS = {"viewed", "played", "paused", "seeked", "stopped", "loaded", "answered", "enrolled"}
VIDEO_VERBS = {"loaded", "played", "paused", "seeked", "stopped"}
OPENEDX_FIELDS = ("username", "event_type", "event_source", "context", "time", "page", "host", "ip", "agent")


@pytest.fixture(scope="module")
def activities() -> list[Activity]:
    """A week of one course with 50 learners (the default config)."""
    return list(simulate(Config()))


# Determinism ------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_events() -> None:
    config = Config(students=15, days=3, seed=7)
    first, second = list(simulate(config)), list(simulate(replace(config)))
    assert first == second
    assert [to_openedx(a) for a in first] == [to_openedx(a) for a in second]
    assert [to_xapi(a) for a in first] == [to_xapi(a) for a in second]


def test_a_different_seed_gives_different_events() -> None:
    one, other = (
        list(simulate(Config(students=15, days=3, seed=7))),
        list(simulate(Config(students=15, days=3, seed=8))),
    )
    assert [a.vocabulary() for a in one] != [a.vocabulary() for a in other]
    assert {a.id for a in one}.isdisjoint(a.id for a in other)


@pytest.mark.slow  # two generator processes
def test_files_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Same bytes from two processes with different hash seeds (no set/dict-order or hash() leaks)."""
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        subprocess.run(
            [sys.executable, "-m", "tasks", "generate", "--students", "8", "--days", "2", "--out", str(out)],
            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": hash_seed}, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        outputs.append([(out / name).read_bytes() for name in ("tracking.log", "xapi.jsonl")])
    assert outputs[0] == outputs[1]


# Size, coverage (speed: python -m bench.generate) -----------------------------------------------------
def test_size_and_coverage_of_the_default_config(activities: list[Activity]) -> None:
    assert 2000 < len(activities) < 20000
    assert set(Counter(a.verb for a in activities)) == VERBS
    assert len({a.agent for a in activities}) == 50
    per_learner = Counter(a.agent for a in activities)
    assert max(per_learner.values()) > 4 * min(per_learner.values())  # engagement varies
    assert len({a.object for a in activities if a.verb in VIDEO_VERBS}) == 6
    assert len({a.object for a in activities if a.verb == "answered"}) == 8


def test_ids_are_unique_in_both_formats(activities: list[Activity]) -> None:
    assert len({a.id for a in activities}) == len(activities)
    assert all(uuid.UUID(a.id).version == 4 for a in activities[:100])
    assert len({event_id(to_openedx(a)) for a in activities}) == len(activities)  # derived by the framework
    assert len({event_id(to_xapi(a)) for a in activities}) == len(activities)  # the statement's own id


# Realism ------------------------------------------------------------------------------------
def test_events_come_in_time_order_within_the_days(activities: list[Activity]) -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    times = [a.timestamp for a in activities]
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < start + timedelta(days=7)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert len({t.date() for t in times}) == 7


def test_timestamps_increase_within_each_session(activities: list[Activity]) -> None:
    sessions: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    learners: dict[str, list[datetime]] = defaultdict(list)
    for a in activities:
        sessions[(a.agent, a.session)].append(a.timestamp)
        learners[a.agent].append(a.timestamp)
    for times in [*sessions.values(), *learners.values()]:
        assert all(earlier < later for earlier, later in itertools.pairwise(times))
    assert len(sessions) > 3 * len(learners)  # several sessions each, on average


def test_evening_activity_dominates(activities: list[Activity]) -> None:
    hours = Counter(a.timestamp.hour for a in activities)
    evening = sum(hours[h] for h in range(17, 24))
    night, morning, afternoon = (sum(hours[h] for h in span) for span in (range(0, 7), range(7, 12), range(12, 17)))
    assert evening > 0.4 * len(activities)
    assert evening > 2 * max(night, morning, afternoon)


def test_video_positions_stay_within_the_video_and_move_forward(activities: list[Activity]) -> None:
    playhead: dict[tuple[str, str], float] = {}
    watches: list[list[Activity]] = []
    current: dict[tuple[str, str], list[Activity]] = {}
    for a in (a for a in activities if a.verb in VIDEO_VERBS):
        key, facts = (a.agent, a.object), a.result
        duration = facts["duration"]
        assert duration > 0
        for name in ("position", "seek_from", "seek_to"):
            if name in facts:
                assert 0 <= facts[name] <= duration, a
        if a.verb == "loaded":
            playhead[key], current[key] = 0.0, []
            watches.append(current[key])
            continue
        current[key].append(a)
        if a.verb == "seeked":
            assert facts["seek_from"] >= playhead[key]
            playhead[key] = facts["seek_to"]
        else:
            assert facts["position"] >= playhead[key], a  # positions increase with time between seeks
            playhead[key] = facts["position"]
        if a.verb == "stopped":
            assert facts["position"] == duration
    log_end = datetime(2026, 11, 9, tzinfo=UTC) - timedelta(hours=1)  # a watch may be cut where the log ends
    ends = [w[-1] for w in watches if w and w[-1].timestamp < log_end]
    completed = [a for a in ends if a.verb == "stopped"]
    dropped = [a.result["position"] / a.result["duration"] for a in ends if a.verb != "stopped"]
    assert completed and dropped and all(a.verb == "paused" for a in ends if a.verb != "stopped")
    assert sum(f >= 0.5 for f in dropped) > sum(f < 0.5 for f in dropped)  # drop-off likelier later in a video


def test_attempts_stop_after_a_correct_answer(activities: list[Activity]) -> None:
    answers: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for a in activities:
        if a.verb == "answered":
            answers[(a.agent, a.object)].append(a.result)
    assert answers
    for results in answers.values():
        assert [r["attempt"] for r in results] == list(range(1, len(results) + 1))
        assert len(results) <= 3
        assert not any(r["success"] for r in results[:-1])
        for r in results:
            assert set(r) == {"success", "score", "max_score", "attempt"}
            assert (r["score"] == r["max_score"]) if r["success"] else (0 <= r["score"] < r["max_score"])
    outcomes = Counter(results[-1]["success"] for results in answers.values())
    assert outcomes[True] > outcomes[False] > 0
    assert any(len(results) > 1 for results in answers.values())


def test_every_learner_enrolls_once_per_course_before_anything_else() -> None:
    config = Config(courses=2, students=20, days=3, seed=3)
    first_seen: dict[tuple[str, str], Activity] = {}
    enrollments: Counter[tuple[str, str]] = Counter()
    for a in simulate(config):
        first_seen.setdefault((a.agent, a.course), a)
        if a.verb == "enrolled":
            enrollments[(a.agent, a.object)] += 1
            assert a.object == a.course and a.timestamp.date() == config.start
    assert len({course for _, course in enrollments}) == 2
    assert set(enrollments.values()) == {1} and len(enrollments) == 40
    assert all(a.verb == "enrolled" for a in first_seen.values())


# Both formats -------------------------------------------------------------------------------
def test_both_formats_read_back_as_the_same_records(activities: list[Activity]) -> None:
    for a in activities:
        openedx, xapi = json.loads(json.dumps(to_openedx(a))), json.loads(json.dumps(to_xapi(a)))
        assert vocabulary(openedx) == vocabulary(xapi) == a.vocabulary(), a


def test_round_trip_through_events_with_registered_properties(activities: list[Activity]) -> None:
    registry = Registry()
    registry.add_module("datalayer", modules.datalayer)
    properties = {name: registry.get("property", name).func for name in registry.names("property")}
    for a in activities[::7]:
        for raw in (to_openedx(a), to_xapi(a)):
            evt = Event(raw, properties)
            assert (evt.agent, evt.verb, evt.object, evt.course, evt.timestamp, evt.result) == tuple(
                a.vocabulary().values()
            )


def test_open_edx_events_look_like_the_tracking_log(activities: list[Activity]) -> None:
    time_format = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
    types: Counter[str] = Counter()
    for a in activities:
        event = to_openedx(a)
        assert "id" not in event and "event_id" not in event
        assert set(OPENEDX_FIELDS) <= set(event)
        assert {"course_id", "user_id", "org_id", "path"} <= set(event["context"])
        assert time_format.match(event["time"])
        if event["event_source"] == "browser":
            assert isinstance(event["event"], str) and isinstance(json.loads(event["event"]), dict)
            assert event["page"].startswith("https://")
        else:
            assert event["event_source"] == "server" and isinstance(event["event"], dict)
        types[event["event_type"] if not event["event_type"].startswith("/") else "page view"] += 1
    assert set(types) == {
        "load_video", "play_video", "pause_video", "seek_video", "stop_video", "problem_check", "page view",
        "edx.course.enrollment.activated", "edx.ui.lms.sequence.next_selected", "seq_goto", "seq_next",
    }  # fmt: skip


def test_xapi_statements_look_like_statements(activities: list[Activity]) -> None:
    for a in activities[::5]:
        statement = to_xapi(a)
        assert statement["id"] == a.id
        assert statement["actor"] == {
            "objectType": "Agent",
            "account": {"homePage": "https://lms.example", "name": a.agent},
        }
        assert statement["verb"]["id"].startswith(("http://adlnet.gov/", "https://w3id.org/xapi/video/"))
        assert statement["object"]["objectType"] == "Activity" and statement["object"]["id"].startswith("https://")
        parent = statement["context"]["contextActivities"]["parent"]
        assert parent[0]["id"] == f"https://lms.example/courses/{a.course}"
        assert statement["timestamp"].endswith("Z")


# Files and the command line -----------------------------------------------------------------
def test_write_jsonl_plain_and_gzip(tmp_path: Path) -> None:
    events = [{"a": 1}, {"b": [2, 3]}]
    assert write_jsonl(tmp_path / "x.jsonl", events) == 2
    assert [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()] == events
    assert write_jsonl(tmp_path / "sub" / "x.jsonl.gz", iter(events), gzip=True) == 2
    with gzip.open(tmp_path / "sub" / "x.jsonl.gz", "rt") as f:
        assert [json.loads(line) for line in f] == events


def test_generate_files_writes_both_formats(tmp_path: Path) -> None:
    config = Config(students=5, days=2, start=date(2027, 1, 4))
    paths = generate_files(config, tmp_path)
    assert [p.name for p in paths] == ["tracking.log", "xapi.jsonl"]
    openedx, xapi = ([json.loads(line) for line in p.read_text().splitlines()] for p in paths)
    assert len(openedx) == len(xapi) == sum(1 for _ in simulate(config)) > 0
    assert [vocabulary(e) for e in openedx] == [vocabulary(e) for e in xapi]
    assert openedx[0]["time"].startswith("2027-01-04")
    gz = generate_files(config, tmp_path / "gz", formats=["xapi"], gzip=True)
    assert [p.name for p in gz] == ["xapi.jsonl.gz"]
    with gzip.open(gz[0], "rt") as f:
        assert [json.loads(line) for line in f] == xapi
    with pytest.raises(ValueError, match="unknown format"):
        generate_files(config, tmp_path, formats=["csv"])


def test_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--students", "4", "--days", "2", "--seed", "9", "--format", "openedx",
                 "--out", str(tmp_path), "--gzip"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    count = sum(1 for _ in simulate(Config(students=4, days=2, seed=9)))
    assert f"tracking.log.gz  {count} events (openedx)" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracking.log.gz"]
    assert main(["generate", "--students", "-1", "--out", str(tmp_path)]) == 2
    assert "students" in capsys.readouterr().err
