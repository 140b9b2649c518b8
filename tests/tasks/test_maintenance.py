"""Housekeeping on beat: event-log retention (``maintenance.prune_event_log``), per-kind time limits."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from config.beat import PRUNE_EVENT_LOG_TASK, SWEEP_TASK
from config.settings import Settings
from tasks.app import Insights
from tasks.pipeline.event_log import EventLog
from tasks.schedule import prune_event_log_segments
from tests.conftest import Pipeline

DAY = 86400.0


def write_segments(directory: Path, ages_in_days: list[float]) -> list[Path]:
    """One closed event-log segment per age, last modified that many days ago."""
    paths = []
    for n, age in enumerate(ages_in_days):
        with EventLog(directory) as log:
            log.append([(f"maintenance-{n}", time.time(), {"maintenance_test": n})])
            path = log.current_segment
        assert path is not None
        then = time.time() - age * DAY
        os.utime(path, (then, then))
        paths.append(path)
    return paths


def test_retention_defaults_to_30_days_and_is_read_from_the_environment() -> None:
    assert Settings().eventlog_retention_days == 30
    settings = Settings.from_env({"INSIGHTS_EVENTLOG_RETENTION_DAYS": "7.5"})
    assert settings.eventlog_retention_days == 7.5
    assert Settings.from_env(settings.to_env()).eventlog_retention_days == 7.5


def test_beat_prunes_the_event_log_daily_on_the_reports_queue(insights: Insights) -> None:
    beat = insights.celery.conf.beat_schedule
    assert beat[PRUNE_EVENT_LOG_TASK]["task"] == PRUNE_EVENT_LOG_TASK
    assert beat[PRUNE_EVENT_LOG_TASK]["schedule"] == timedelta(days=1)
    assert SWEEP_TASK in beat
    assert PRUNE_EVENT_LOG_TASK in insights.celery.tasks
    assert insights.celery.amqp.router.route({}, PRUNE_EVENT_LOG_TASK, (), {})["queue"].name == "reports"


def test_pruning_removes_segments_older_than_the_retention_and_keeps_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    app = cast(Insights, SimpleNamespace(settings=dataclasses.replace(settings, data_dir=tmp_path)))
    old, recent, fresh = write_segments(tmp_path / "eventlog", [31, 29, 0])
    assert prune_event_log_segments(app) == [old.name]
    assert EventLog(tmp_path / "eventlog").segments() == [recent, fresh]
    assert prune_event_log_segments(app) == []
    shorter = cast(Insights, SimpleNamespace(settings=dataclasses.replace(app.settings, eventlog_retention_days=1)))
    assert prune_event_log_segments(shorter) == [recent.name]
    assert prune_event_log_segments(shorter, now=time.time() + 2 * DAY) == [fresh.name]


def test_the_prune_task_runs_on_the_worker(insights: Insights, worker: Pipeline) -> None:
    directory = insights.settings.event_log_dir  # the batcher's live segment is there too: it stays
    old, recent = write_segments(directory, [45, 1])
    try:
        assert insights.celery.send_task(PRUNE_EVENT_LOG_TASK).get(timeout=30) >= 1
        assert not old.exists()
        assert recent.exists()
    finally:
        for path in (old, recent):
            path.unlink(missing_ok=True)


def test_views_and_queries_have_shorter_time_limits_and_jobs_longer_ones(insights: Insights) -> None:
    tasks = insights.celery.tasks
    limits = {
        kind: {(t.soft_time_limit, t.time_limit) for name, t in tasks.items() if name.startswith(kind)}
        for kind in ("view.", "query.", "handler.", "batch.", "cron.")
    }
    settings = insights.settings
    assert limits["view."] == limits["query."] == {(120, settings.view_time_limit)} == {(120, 150)}
    assert limits["handler."] == limits["batch."] == {(540, 600)}  # the global limits (config/celery.py)
    assert limits["cron."] == {(1740, settings.cron_time_limit)} == {(1740, 1800)}
    assert (tasks[SWEEP_TASK].soft_time_limit, tasks[SWEEP_TASK].time_limit) == (1740, settings.cron_time_limit)
    assert tasks[PRUNE_EVENT_LOG_TASK].time_limit == settings.cron_time_limit
