"""Honest backfills (issue 13): a replay reports, per handler, what it skipped as already handled,
and ``--reprocess`` hands already-handled events to the named handlers again (real pipeline).

The handler is the idempotent ``count_deliveries`` of ``tests/sample_modules/pipeline``: one
document per ``evt.id`` it was given, with how often it was given it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tasks.pipeline.replay import replay_main
from tests.conftest import send, wait_for
from tests.tasks.test_batcher import delivered, timed
from tests.tasks.test_replay import write_log

HANDLER = "handler.pipeline.count_deliveries"


def run_replay(insights: Insights, argv: list[str], capsys: pytest.CaptureFixture[str], expect: int = 0) -> str:
    """Run ``insights replay ARGV`` against the test deployment; returns what it printed."""
    code = replay_main([*argv, "--no-progress"], insights.settings, insights.resolve_handlers)
    out, err = capsys.readouterr()
    assert code == expect, out + err
    return out + err


def test_a_replay_reports_skipped_events_and_reprocess_hands_them_to_the_handler_again(
    client: FlaskClient, insights: Insights, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = uuid.uuid4().hex
    events = timed(run, 12)
    send(client, events)  # the handler records them live
    assert sorted(delivered(client, run).values()) == [1] * 12
    file = write_log(tmp_path / "tracking.log", events)
    argv = [str(file), "--handlers", "count_deliveries", "--checkpoint", str(tmp_path / "cp")]

    # A plain replay: every event was handled already; the report says so (it used to say nothing).
    out = run_replay(insights, argv, capsys)
    assert f"{HANDLER}: 12 sent, 0 new, 12 skipped as already handled" in out
    assert "use --reprocess to hand them to the handler again" in out
    assert sorted(delivered(client, run).values()) == [1] * 12  # not called again

    # --reprocess: a new handling generation, every event is handed to the handler once more.
    out = run_replay(insights, [*argv, "--reprocess"], capsys)
    assert f"{HANDLER}: 12 sent, 12 new, 0 skipped" in out
    wait_for(lambda: sorted(delivered(client, run).values()) == [2] * 12, what="every event handled again")
    # A second identical reprocess is a generation of its own: it delivers again.
    out = run_replay(insights, [*argv, "--reprocess"], capsys)
    assert f"{HANDLER}: 12 sent, 12 new, 0 skipped" in out
    wait_for(lambda: sorted(delivered(client, run).values()) == [3] * 12, what="every event handled a third time")

    # A normal replay afterwards still dedupes.
    out = run_replay(insights, argv, capsys)
    assert f"{HANDLER}: 12 sent, 0 new, 12 skipped as already handled" in out
    assert sorted(delivered(client, run).values()) == [3] * 12


def test_a_reprocess_delivers_an_event_repeated_in_its_source_once(
    client: FlaskClient, insights: Insights, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = uuid.uuid4().hex
    events = timed(run, 6)
    send(client, events)
    file = write_log(tmp_path / "tracking.log", [*events, *events[:3]])  # a log may hold an event twice
    argv = [str(file), "--handlers", "count_deliveries", "--reprocess", "--chunk", "4"]
    out = run_replay(insights, [*argv, "--checkpoint", str(tmp_path / "cp")], capsys)
    assert f"{HANDLER}: 9 sent, 6 new, 3 skipped as already handled" in out
    wait_for(lambda: sorted(delivered(client, run).values()) == [2] * 6, what="each event handled once more")


def test_a_reprocess_to_every_handler_must_be_asked_for_explicitly(
    insights: Insights, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_log(tmp_path / "tracking.log", timed(uuid.uuid4().hex, 1))
    out = run_replay(insights, [str(file), "--reprocess"], capsys, expect=2)
    assert "--reprocess needs --handlers" in out and "--all-handlers" in out
