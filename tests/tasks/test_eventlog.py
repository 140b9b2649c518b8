"""The event log: JSON-lines segments, rotation, positions, torn lines, retention, several writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from config.settings import ROOT, Settings
from tasks.pipeline.event_log import EventLog, Position


def records(count: int, start: int = 0, received: float = 1764081912.25) -> list[tuple[str, float, dict[str, Any]]]:
    return [
        (f"id-{n}", received + n, {"user": f"u{n % 7}", "event_type": "play_video", "n": n, "text": "héllo \u2028"})
        for n in range(start, start + count)
    ]


def as_dicts(batch: list[tuple[str, float, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"id": event_id, "received": received, "event": event} for event_id, received, event in batch]


def test_append_and_read_round_trip_across_rotated_segments(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log", segment_bytes=600)
    written = []
    for batch_number in range(12):
        batch = records(3, start=batch_number * 3)
        log.append(batch)
        written += batch
    log.close()

    segments = log.segments()
    assert len(segments) > 3
    assert [path.name for path in segments] == sorted(path.name for path in segments)
    # Every segment but a single oversized batch stays within segment_bytes; lines are compact JSON objects.
    for path in segments:
        assert path.stat().st_size <= 600
        for line in path.read_bytes().splitlines():
            assert list(json.loads(line)) == ["id", "received", "event"]
            assert b": " not in line
    read = list(log.read())
    assert [record for _, record in read] == as_dicts(written)
    positions = [position for position, _ in read]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert positions[-1] == Position(segments[-1].name, segments[-1].stat().st_size)


def test_reading_from_a_position_continues_right_after_it(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=500)
    for batch_number in range(6):
        log.append(records(4, start=batch_number * 4))
    everything = list(log.read())
    for index, (position, _) in enumerate(everything):
        assert list(log.read(position)) == everything[index + 1 :], index
    assert list(log.read(everything[-1][0])) == []


def test_a_torn_last_line_is_skipped_and_writing_goes_on_in_a_new_segment(tmp_path: Path) -> None:
    first = EventLog(tmp_path)
    first.append(records(3))
    torn_segment = first.current_segment
    assert torn_segment is not None
    with torn_segment.open("ab") as file:  # a crash in the middle of a write
        file.write(b'{"id":"id-3","received":1764081915.25,"ev')
    size_with_torn_line = torn_segment.stat().st_size

    assert [record["id"] for _, record in EventLog(tmp_path).read()] == ["id-0", "id-1", "id-2"]

    second = EventLog(tmp_path)  # the restarted batcher
    second.append(records(2, start=10))
    assert second.current_segment != torn_segment
    assert torn_segment.stat().st_size == size_with_torn_line
    read = list(second.read())
    assert [record["id"] for _, record in read] == ["id-0", "id-1", "id-2", "id-10", "id-11"]
    # Resuming just before the torn line skips it too.
    assert [record["id"] for _, record in second.read(read[2][0])] == ["id-10", "id-11"]


def test_a_malformed_complete_line_is_reported_and_skipped(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append(records(1))
    segment = log.current_segment
    assert segment is not None
    with segment.open("ab") as file:
        file.write(b"not json\n[1, 2]\n")
    log.close()
    log.append(records(1, start=1))
    reported: list[tuple[str, int]] = []
    ids = [record["id"] for _, record in log.read(on_malformed=lambda name, offset: reported.append((name, offset)))]
    assert ids == ["id-0", "id-1"]
    assert [name for name, _ in reported] == [segment.name, segment.name]


def test_records_appended_after_reading_began_are_not_read(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append(records(3))
    reader = log.read()
    next(reader)
    log.append(records(3, start=3))  # same segment, after the snapshot
    assert [record["id"] for _, record in reader] == ["id-1", "id-2"]


def test_prune_deletes_old_segments_but_never_the_current_one(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=300)
    for batch_number in range(5):
        log.append(records(2, start=batch_number * 2))
    segments = log.segments()
    current = log.current_segment
    assert current in segments and len(segments) > 2
    long_ago = time.time() - 40 * 86400
    for path in segments:
        os.utime(path, (long_ago, long_ago))

    assert log.prune(time.time() - 30 * 86400) == [path for path in segments if path != current]
    assert log.segments() == [current]
    log.append(records(1, start=100))
    assert [record["id"] for _, record in log.read()][-1] == "id-100"
    assert log.prune(long_ago) == []


def test_a_writer_whose_segment_another_process_pruned_starts_a_new_one(tmp_path: Path) -> None:
    idle = EventLog(tmp_path)
    idle.append(records(1))
    pruner = EventLog(tmp_path)
    assert pruner.prune(time.time() + 1) == [idle.current_segment]
    idle.append(records(1, start=1))
    assert [record["id"] for _, record in pruner.read()] == ["id-1"]


def test_two_logs_in_one_directory_write_their_own_segments(tmp_path: Path) -> None:
    first, second = EventLog(tmp_path), EventLog(tmp_path)
    for batch_number in range(4):
        first.append(records(2, start=batch_number * 2))
        second.append(records(2, start=1000 + batch_number * 2))
    assert first.current_segment != second.current_segment
    ids = [record["id"] for _, record in first.read()]
    assert sorted(ids) == sorted([f"id-{n}" for n in range(8)] + [f"id-{n}" for n in range(1000, 1008)])
    assert [i for i in ids if int(i[3:]) < 1000] == [f"id-{n}" for n in range(8)]


def test_two_processes_append_to_one_directory(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from tasks.pipeline.event_log import EventLog\n"
        "log = EventLog(Path(sys.argv[1]), segment_bytes=4000)\n"
        "for b in range(50):\n"
        "    log.append([(f'child-{b}-{i}', 1.5, {'n': i}) for i in range(20)])\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT)
    log = EventLog(tmp_path, segment_bytes=4000)
    batches = 0
    deadline = time.monotonic() + 60
    # Keep writing until the child is done, so that both really write at the same time.
    while (child.poll() is None or batches < 50) and time.monotonic() < deadline:
        log.append([(f"parent-{batches}-{i}", 2.5, {"n": i}) for i in range(20)])
        batches += 1
    assert child.wait(timeout=60) == 0
    ids = [record["id"] for _, record in log.read()]
    assert len(ids) == len(set(ids)) == 1000 + 20 * batches
    assert {path.name.split("-p")[1][:7] for path in log.segments()} == {f"{os.getpid():07d}", f"{child.pid:07d}"}


def test_empty_batches_create_nothing_and_the_directory_comes_from_settings(tmp_path: Path) -> None:
    log = EventLog(Settings(data_dir=tmp_path).event_log_dir)
    assert log.directory == tmp_path / "eventlog"
    log.append([])
    assert log.segments() == [] and list(log.read()) == []
    assert Position.from_json(Position("events-x.jsonl", 12).to_json()) == Position("events-x.jsonl", 12)
