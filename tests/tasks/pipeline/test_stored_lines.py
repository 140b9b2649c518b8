"""Stored lines (tracking-log files, event-log segments): a line that is not a JSON object is skipped and reported."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.pipeline.event_log import EventLog
from tasks.pipeline.parsing import json_object, stored_object
from tasks.pipeline.replay import read_tracking_logs

DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError on it, not ValueError


def test_a_line_nested_too_deep_is_malformed_not_a_crash(tmp_path: Path) -> None:
    assert json_object(DEEP) is None and json_object('{"a": ' + DEEP + "}") is None
    file = tmp_path / "tracking.log"
    file.write_text(json.dumps({"n": 1}) + "\n" + DEEP + "\n" + json.dumps({"n": 2}) + "\n")
    reported: list[tuple[str, int]] = []
    events = [e for _, e in read_tracking_logs([file], on_malformed=lambda *at: reported.append(at))]
    assert events == [{"n": 1}, {"n": 2}] and reported == [(str(file), 2)]

    log = EventLog(tmp_path / "eventlog")
    log.append([("id-1", 1.0, {"n": 1})])
    assert log.current_segment is not None
    with log.current_segment.open("ab") as segment:
        segment.write(DEEP.encode() + b"\n")
    log.close()
    log.append([("id-2", 1.0, {"n": 2})])
    reported.clear()
    assert [r["id"] for _, r in log.read(on_malformed=lambda *at: reported.append(at))] == ["id-1", "id-2"]
    assert len(reported) == 1


def test_stored_object_warns_with_the_place_and_reports_it(caplog: object) -> None:
    reported: list[tuple[str, int]] = []
    assert stored_object(b'{"a": 1}', "f", 3, reported.append) == {"a": 1}  # type: ignore[arg-type]
    assert stored_object(b"[1]", "f", 4, lambda *at: reported.append(at)) is None
    assert stored_object(b"nope", "f", 5, None, at="segment f byte 5") is None
    assert reported == [("f", 4)]
