"""Replay: tracking-log and event-log sources, chunks, targets, pacing, checkpoints and resuming (real Redis)."""

from __future__ import annotations

import gzip
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import ROOT, Settings
from tasks.authoring.event_ids import event_id
from tasks.ops.embedded import EmbeddedRedis
from tasks.pipeline.event_log import EventLog, Position
from tasks.pipeline.replay import (
    CheckpointError,
    EventLogSource,
    Item,
    Recorded,
    ReplayInterrupted,
    TrackingLogs,
    read_event_log,
    read_tracking_logs,
    replay,
    replay_main,
)
from tasks.pipeline.stream import Intake
from tests.conftest import wait_for


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


@pytest.fixture
def intake(client: redis.Redis) -> Iterator[Intake]:
    name = f"test-{uuid.uuid4().hex}"
    stream = Intake(client, name, f"{name}:unreadable")
    yield stream
    client.delete(stream.stream)


def entries(intake: Intake) -> list[tuple[list[dict[str, Any]], int, str]]:
    """The stream's entries as (events, n, targets)."""
    rows = intake._client.xrange(intake.stream)
    return [(json.loads(f[b"events"]), int(f[b"n"]), f[b"targets"].decode()) for _, f in rows]


def submitted(intake: Intake) -> list[dict[str, Any]]:
    return [event for events, _, _ in entries(intake) for event in events]


def tracking_events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"username": f"u{n % 5}", "event_type": "play_video", "time": f"2026-11-01T00:00:{n % 60:02d}", "n": n}
        for n in range(start, start + count)
    ]


def write_log(path: Path, lines: Sequence[str | dict[str, Any]]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# -- sources -----------------------------------------------------------------------------------


def test_tracking_logs_plain_and_gzipped_skip_blank_and_count_malformed_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tracking_events(3)
    new = tracking_events(2, start=3)
    gz = write_log(tmp_path / "tracking.log-20261101.gz", [old[0], "", old[1], "{broken", old[2]])
    plain = write_log(tmp_path / "tracking.log", ["   ", new[0], "[1, 2]", new[1]])

    source = TrackingLogs([gz, plain])
    with caplog.at_level(logging.WARNING):
        read = list(source())
    assert [event for _, event in read] == old + new
    assert [position for position, _ in read] == [
        Position(str(gz), 1), Position(str(gz), 3), Position(str(gz), 5),
        Position(str(plain), 2), Position(str(plain), 4),
    ]  # fmt: skip
    assert source.skipped_malformed == 2
    assert f"{gz}:4" in caplog.text and f"{plain}:3" in caplog.text


def test_tracking_logs_resume_after_a_line_and_survive_a_truncated_gzip(tmp_path: Path) -> None:
    events = tracking_events(40)
    first = write_log(tmp_path / "a.log", events[:10])
    whole = gzip.compress("".join(json.dumps(event) + "\n" for event in events[10:30]).encode())
    truncated = tmp_path / "b.log.gz"
    truncated.write_bytes(whole[: len(whole) - 12])  # lost its trailer (and maybe some data)
    last = write_log(tmp_path / "c.log", events[30:])

    malformed: list[tuple[str, int]] = []
    read = list(read_tracking_logs([first, truncated, last], on_malformed=lambda f, n: malformed.append((f, n))))
    got = [event["n"] for _, event in read]
    assert got[:10] == list(range(10)) and got[-10:] == list(range(30, 40))
    assert [name for name, _ in malformed] == [str(truncated)]

    resumed = list(read_tracking_logs([first, truncated, last], Position(str(first), 7)))
    assert resumed == read[7:]
    with pytest.raises(ValueError, match="not one of the files"):
        next(read_tracking_logs([first], Position(str(last), 1)))


def test_event_log_source_yields_the_raw_events_with_their_recorded_id_and_sender(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=400)
    events = tracking_events(9)
    for n in range(0, 9, 3):
        log.append([(f"id-{i}", 1.0, events[i]) for i in range(n, n + 3)], sender="lms" if n == 3 else None)
    read = list(read_event_log(log))
    assert [item[1] for item in read] == events
    assert [item[2] for item in read] == [Recorded(f"id-{i}", "lms" if 3 <= i < 6 else None) for i in range(9)]
    assert [item[1] for item in EventLogSource(log)(read[4][0])] == events[5:]


def stream_entries(intake: Intake) -> list[tuple[str | None, list[str] | None, int]]:
    """The stream's entries as (sender, ids, number of events)."""
    rows = intake._client.xrange(intake.stream)
    return [
        (
            f[b"sender"].decode() if b"sender" in f else None,
            json.loads(f[b"ids"]) if b"ids" in f else None,
            int(f[b"n"]),
        )
        for _, f in rows
    ]


def test_replaying_the_event_log_passes_each_events_recorded_id_and_sender(intake: Intake, tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    events = tracking_events(7)
    log.append([("a:0", 1.0, events[0]), ("a:1", 1.0, events[1])], sender="a")
    log.append([("2", 1.0, events[2]), ("3", 1.0, events[3]), ("4", 1.0, events[4])])
    log.append([("b:5", 1.0, events[5]), ("b:6", 1.0, events[6])], sender="b")
    replay(intake, EventLogSource(log), chunk_size=2, progress=False)
    assert submitted(intake) == events
    assert stream_entries(intake) == [  # a chunk holds one sender's events
        ("a", ["a:0", "a:1"], 2), (None, ["2", "3"], 2), (None, ["4"], 1), ("b", ["b:5", "b:6"], 2),
    ]  # fmt: skip


def test_a_tracking_log_replay_gives_content_ids_in_the_senders_scope(intake: Intake, tmp_path: Path) -> None:
    events = [*tracking_events(2), {"id": 5, "user": "x"}, {"user": "no id, no time"}]
    source = TrackingLogs([write_log(tmp_path / "tracking.log", events)])
    checkpoint = tmp_path / "replay.checkpoint"
    with pytest.raises(KeyboardInterrupt):
        replay(
            intake, Interrupting(source, 3, KeyboardInterrupt), chunk_size=2, checkpoint=checkpoint,
            progress=False, sender="lms",
        )  # fmt: skip
    with pytest.raises(CheckpointError, match="as lms"):  # resuming in another scope is refused
        replay(intake, source, chunk_size=2, checkpoint=checkpoint, progress=False)
    replay(intake, source, chunk_size=2, checkpoint=checkpoint, progress=False, sender="lms")
    expected = [event_id(event, sender="lms") for event in events]
    assert stream_entries(intake) == [("lms", expected[:2], 2), ("lms", expected[2:], 2)]
    assert expected[2] == "~@lms:~id.int:5" and expected[3].startswith("~@lms:") and "~intake" not in expected[3]


# -- replay ------------------------------------------------------------------------------------


def test_replay_sends_every_event_once_in_chunks_and_removes_its_checkpoint(intake: Intake, tmp_path: Path) -> None:
    events = tracking_events(1234)
    source = TrackingLogs(
        [write_log(tmp_path / "tracking.log", events[:1000]), write_log(tmp_path / "t.gz", events[1000:])]
    )
    checkpoint = tmp_path / "replay.checkpoint"

    stats = replay(intake, source, chunk_size=100, checkpoint=checkpoint, progress=False)

    assert submitted(intake) == events
    assert [(n, targets) for _, n, targets in entries(intake)] == [(100, "")] * 12 + [(34, "")]
    assert (stats.events, stats.chunks, stats.skipped_malformed, stats.resumed_from) == (1234, 13, 0, None)
    assert stats.seconds > 0
    assert not checkpoint.exists()


def test_replay_to_selected_handlers_sets_the_targets_field(intake: Intake, tmp_path: Path) -> None:
    source = TrackingLogs([write_log(tmp_path / "tracking.log", tracking_events(5))])
    targets = ["handler.testmodule.djt_event_count_event", "handler.other.b"]
    replay(intake, source, targets=targets, chunk_size=2, progress=False)
    assert {target for _, _, target in entries(intake)} == {"handler.other.b,handler.testmodule.djt_event_count_event"}
    assert submitted(intake) == tracking_events(5)


def test_rate_limiting_paces_the_replay(intake: Intake, tmp_path: Path) -> None:
    source = TrackingLogs([write_log(tmp_path / "tracking.log", tracking_events(200))])
    began = time.monotonic()
    stats = replay(intake, source, rate=1000, chunk_size=50, progress=False)
    assert time.monotonic() - began >= 0.18  # 200 events at 1000/s from an empty bucket: 0.2 s at least
    assert stats.chunks == 4 and len(submitted(intake)) == 200


def test_progress_bar_goes_to_stderr(intake: Intake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = TrackingLogs([write_log(tmp_path / "tracking.log", tracking_events(30))])
    replay(intake, source, chunk_size=10, total=30, progress=True)
    captured = capsys.readouterr()
    assert "30/30" in captured.err and "ev/s" in captured.err and captured.out == ""


class Interrupting:
    """A source that breaks off (like Ctrl-C or a crash) after yielding ``after`` events."""

    def __init__(self, inner: TrackingLogs | EventLogSource, after: int, error: type[BaseException]) -> None:
        self.inner, self.after, self.error = inner, after, error
        self.description = inner.description

    def __call__(self, start: Position | None) -> Iterator[Item]:
        for count, item in enumerate(self.inner(start)):
            if count == self.after:
                raise self.error("stopped")
            yield item


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_replay_resumes_from_its_checkpoint(
    intake: Intake, tmp_path: Path, error: type[BaseException]
) -> None:
    events = tracking_events(530)
    source = TrackingLogs([write_log(tmp_path / "tracking.log", events)])
    checkpoint = tmp_path / "replay.checkpoint"

    with pytest.raises(error) as raised:
        replay(intake, Interrupting(source, 250, error), chunk_size=100, checkpoint=checkpoint, progress=False)
    if error is KeyboardInterrupt:
        assert isinstance(raised.value, ReplayInterrupted)
        assert (raised.value.stats.events, raised.value.stats.chunks) == (200, 2)
    state = json.loads(checkpoint.read_text())
    assert state["position"] == Position(str(source.paths[0]), 200).to_json()
    assert (state["source"], state["targets"], state["events"]) == (source.description, [], 200)

    stats = replay(intake, source, chunk_size=100, checkpoint=checkpoint, progress=False)
    assert stats.resumed_from == Position(str(source.paths[0]), 200)
    assert (stats.events, stats.chunks) == (330, 4)
    assert submitted(intake) == events
    assert not checkpoint.exists()


class CrashingAfterSubmit(Intake):
    """An intake whose process dies right after the broker took chunk number ``crash_on``."""

    def __init__(self, intake: Intake, crash_on: int) -> None:
        super().__init__(intake._client, intake.stream, intake.unreadable)
        self.calls, self.crash_on = 0, crash_on

    def submit(self, events: Sequence[dict[str, Any]], *args: Any, **kwargs: Any) -> str:
        receipt = super().submit(events, *args, **kwargs)
        self.calls += 1
        if self.calls == self.crash_on:
            raise KeyboardInterrupt
        return receipt


def test_a_crash_between_submit_and_checkpoint_repeats_at_most_one_chunk(intake: Intake, tmp_path: Path) -> None:
    events = tracking_events(450)
    source = TrackingLogs([write_log(tmp_path / "tracking.log.gz", events)])
    checkpoint = tmp_path / "replay.checkpoint"
    targets = ["handler.testmodule.djt_event_count_event"]

    with pytest.raises(KeyboardInterrupt):
        replay(
            CrashingAfterSubmit(intake, 3),
            source,
            targets=targets,
            chunk_size=100,
            checkpoint=checkpoint,
            progress=False,
        )
    replay(intake, source, targets=targets, chunk_size=100, checkpoint=checkpoint, progress=False)

    counts = Counter(event["n"] for event in submitted(intake))
    assert set(counts) == set(range(450))
    repeated = sorted(n for n, times in counts.items() if times > 1)
    assert repeated == list(range(200, 300)) and max(counts.values()) == 2
    assert not checkpoint.exists()


def test_a_checkpoint_of_another_replay_is_refused(intake: Intake, tmp_path: Path) -> None:
    first = TrackingLogs([write_log(tmp_path / "a.log", tracking_events(50))])
    other = TrackingLogs([write_log(tmp_path / "b.log", tracking_events(50))])
    checkpoint = tmp_path / "replay.checkpoint"
    with pytest.raises(KeyboardInterrupt):
        replay(intake, Interrupting(first, 25, KeyboardInterrupt), chunk_size=10, checkpoint=checkpoint, progress=False)
    saved = checkpoint.read_text()
    sent = len(submitted(intake))

    with pytest.raises(ValueError, match="belongs to another replay"):
        replay(intake, other, chunk_size=10, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match="every handler"):
        replay(intake, first, targets=["handler.x.y"], chunk_size=10, checkpoint=checkpoint, progress=False)
    assert checkpoint.read_text() == saved and len(submitted(intake)) == sent

    checkpoint.write_text("{not json")
    with pytest.raises(CheckpointError, match="delete it"):
        replay(intake, first, checkpoint=checkpoint, progress=False)


def test_replaying_the_event_log_resumes_by_segment_and_offset(intake: Intake, tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog", segment_bytes=1500)
    events = tracking_events(120)
    for n in range(0, 120, 20):
        log.append([(f"id-{i}", 1.0, events[i]) for i in range(n, n + 20)])
    assert len(log.segments()) > 2
    checkpoint = tmp_path / "replay.checkpoint"
    source = EventLogSource(log)

    with pytest.raises(KeyboardInterrupt):
        replay(
            intake, Interrupting(source, 77, KeyboardInterrupt), chunk_size=15, checkpoint=checkpoint, progress=False
        )
    assert json.loads(checkpoint.read_text())["events"] == 75
    stats = replay(intake, source, chunk_size=15, checkpoint=checkpoint, progress=False)
    assert stats.events == 45 and stats.resumed_from is not None
    assert submitted(intake) == events


# -- command line ------------------------------------------------------------------------------


def test_replay_command(
    intake: Intake, redis_server: EmbeddedRedis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path / "data", event_log="local")
    files = [write_log(tmp_path / "t.log-1.gz", tracking_events(7)), write_log(tmp_path / "t.log", ["oops"])]
    seen: list[list[str]] = []

    def resolve(names: list[str]) -> list[str]:
        seen.append(names)
        return [f"handler.testmodule.{name}" for name in names]

    # No batcher reads this stream: do not wait for one (the report is tested in test_backfill.py).
    argv = [*map(str, files), "--handlers", "a_event, b_event", "--chunk", "3", "--no-progress", "--sender", "lms"]
    argv += ["--wait", "0"]
    assert replay_main(argv, settings, resolve, stream=intake.stream) == 0
    assert seen == [["a_event", "b_event"]]
    assert submitted(intake) == tracking_events(7)
    assert {sender for sender, _, _ in stream_entries(intake)} == {"lms"}
    assert {target for _, _, target in entries(intake)} == {"handler.testmodule.a_event,handler.testmodule.b_event"}
    out = capsys.readouterr().out
    assert "replayed 7 events in 3 chunks" in out and "1 malformed" in out
    assert "not waiting for the batcher (--wait 0)" in out and "GET /receipt/" in out
    assert not (settings.data_dir / "replay.checkpoint").exists()

    log = EventLog(settings.event_log_dir)
    log.append([("id-1", 1.0, {"event_type": "from_the_log"})])
    assert replay_main(["--log", "--no-progress", "--rate", "500", "--wait", "0"], settings, stream=intake.stream) == 0
    assert submitted(intake)[-1] == {"event_type": "from_the_log"}

    # A checkpoint of another replay: refused, and kept.
    checkpoint = tmp_path / "other.checkpoint"
    checkpoint.write_text(
        json.dumps({"version": 1, "source": "x", "targets": [], "position": {"segment": "s", "offset": 1}})
    )
    assert replay_main([str(files[0]), "--checkpoint", str(checkpoint)], settings, stream=intake.stream) == 2
    assert checkpoint.exists() and "belongs to another replay" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [[], ["--log", "x.log"], ["missing.log"], ["--rate", "0", "--log"], ["--chunk", "0", "--log"], ["--bogus"]],
)
def test_replay_command_refuses_bad_arguments(
    argv: list[str], redis_server: EmbeddedRedis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path, event_log="local")
    EventLog(settings.event_log_dir).append([("id", 1.0, {})])
    assert replay_main(argv, settings) == 2
    assert "usage: insights replay" in capsys.readouterr().err


def test_replay_command_refuses_unknown_handlers(
    redis_server: EmbeddedRedis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path)
    file = write_log(tmp_path / "t.log", tracking_events(1))

    def resolve(names: list[str]) -> list[str]:
        raise LookupError(f"no handler named {names[0]!r}")

    assert replay_main([str(file), "--handlers", "nope"], settings, resolve) == 2
    assert "no handler named 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # two replay processes
def test_ctrl_c_stops_the_command_with_a_checkpoint_and_running_it_again_finishes(
    intake: Intake, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    events = tracking_events(3000)
    file = write_log(tmp_path / "tracking.log", events)
    checkpoint = tmp_path / "data" / "replay.checkpoint"
    script = (
        "import sys; from pathlib import Path; from config.settings import Settings\n"
        "from tasks.pipeline.replay import replay_main\n"
        "settings = Settings(redis_url=sys.argv[1], data_dir=Path(sys.argv[2]))\n"
        "sys.exit(replay_main(sys.argv[4:], settings, stream=sys.argv[3]))\n"
    )
    command = [sys.executable, "-c", script, redis_server.url, str(tmp_path / "data"), intake.stream, str(file)]
    paced = [*command, "--rate", "2000", "--chunk", "100", "--no-progress"]
    process = subprocess.Popen(paced, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: checkpoint.exists(), timeout=30, what="the first checkpoint")
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 1, out
    assert out.startswith("interrupted: replayed") and str(checkpoint) in out
    done = json.loads(checkpoint.read_text())["events"]
    assert 0 < done < 3000

    args = [*command, "--no-progress", "--wait", "0"]
    finished = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert f"replayed {3000 - done:,} events" in finished.stdout and "resumed after" in finished.stdout
    counts = Counter(event["n"] for event in submitted(intake))
    assert set(counts) == set(range(3000)) and sum(counts.values()) - 3000 <= 100
    assert not checkpoint.exists()
