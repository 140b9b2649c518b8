"""Beat's static schedule: housekeeping every deployment runs (``@cron`` jobs are added at finalize)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from config.queues import MAINTENANCE_PREFIX
from config.settings import Settings

SWEEP_TASK = f"{MAINTENANCE_PREFIX}sweep_files"
PRUNE_EVENT_LOG_TASK = f"{MAINTENANCE_PREFIX}prune_event_log"
PRUNE_EVENT_LOG_EVERY = timedelta(days=1)
EXPIRE_RUNS_TASK = f"{MAINTENANCE_PREFIX}expire_runs"
EXPIRE_RUNS_EVERY = timedelta(minutes=1)


def static_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery ``beat_schedule`` entries that do not come from modules, keyed by entry name."""
    return {
        # Delete the module files whose expiry passed (``fs.expire``), every INSIGHTS_SWEEP_INTERVAL seconds.
        SWEEP_TASK: {
            "task": SWEEP_TASK,
            "schedule": timedelta(seconds=settings.sweep_interval),
            # A sweep nobody ran before the next one is due is redundant: do not let them pile up.
            "options": {"expires": max(1.0, settings.sweep_interval)},
        },
        # Delete event-log segments older than INSIGHTS_EVENTLOG_RETENTION_DAYS, daily.
        PRUNE_EVENT_LOG_TASK: {
            "task": PRUNE_EVENT_LOG_TASK,
            "schedule": PRUNE_EVENT_LOG_EVERY,
            "options": {"expires": PRUNE_EVENT_LOG_EVERY.total_seconds()},
        },
        # Forget the results of runs (POST /run) nobody polled within INSIGHTS_RUN_EXPIRES, every minute.
        EXPIRE_RUNS_TASK: {
            "task": EXPIRE_RUNS_TASK,
            "schedule": EXPIRE_RUNS_EVERY,
            "options": {"expires": EXPIRE_RUNS_EVERY.total_seconds()},
        },
    }
