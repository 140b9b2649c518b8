"""Celery configuration: serialization, delivery guarantees, results, events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.queues import CRON_PREFIX, MAINTENANCE_PREFIX, QUERY_PREFIX, VIEW_PREFIX, declared_queues, task_routes
from config.redis_url import SentinelTarget, sentinel_of
from config.settings import Settings

# The tagged JSON serializer every task message and result uses (tasks/codec/serialization.py registers it).
SERIALIZER_NAME = "insights-json"
CONTENT_TYPE = "application/x-insights-json"


def celery_config(settings: Settings, queue_overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Celery settings for this deployment (see CELERY_NOTES in the design docs).

    A ``sentinel://`` broker or Redis URL (docs/sentinel.md) adds the master's name (and the
    Sentinel nodes' password) to the broker's and result backend's transport options, and
    points RedBeat at the same master; ``ConfigError`` if it is malformed.
    """
    broker = sentinel_of(settings, settings.broker)
    backend = sentinel_of(settings, settings.redis)
    return {
        "broker_url": settings.broker,
        "result_backend": settings.redis,
        "task_serializer": SERIALIZER_NAME,
        "result_serializer": SERIALIZER_NAME,
        "accept_content": [SERIALIZER_NAME, "json"],
        "result_accept_content": [SERIALIZER_NAME, "json"],
        "task_routes": task_routes(settings.queues, queue_overrides),
        "task_default_queue": settings.queues.batch,
        # Declared up front for the shard queues' x-single-active-consumer (RabbitMQ: one consumer
        # at a time per shard queue); queues named by modules are created when first used.
        "task_queues": declared_queues(settings.queues, settings.shards),
        "task_create_missing_queues": True,
        # Do not lose work: ack after the task ran, and requeue if the worker child died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 4,
        # Results: chords need them; expire them, never 0 (celery#6373).
        "result_expires": settings.result_expires,
        "result_extended": False,
        "result_chord_join_timeout": 30.0,
        "result_backend_transport_options": _transport_options(backend),
        # Redis: unacked messages of a dead worker come back after the visibility timeout (it
        # must exceed the longest task); sweep for them every few seconds, not every 100 s.
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
            "confirm_publish": True,
            **_transport_options(broker),
        },
        "broker_connection_retry_on_startup": True,
        # Task events cost a third of a worker's throughput: off unless asked for. Flower turns
        # them on in the workers while it runs (its --enable_events default), so it works as is.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "task_time_limit": 600,
        "task_soft_time_limit": 540,
        # Per kind (KindTimeLimits): views and queries shorter, @cron jobs and housekeeping longer;
        # handlers and batch.record keep the limits above.
        "task_annotations": [KindTimeLimits(settings)],
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
        # Beat (tasks/schedule.py): RedBeat keeps the schedule in Redis and holds a lock there
        # while it runs, so a second beat started by mistake waits for the lock (and takes over
        # when the first stops, or lock_timeout after it died) instead of sending every job twice.
        # Its key prefix (redbeat_key_prefix) is set with the schedule (tasks/schedule.py).
        "beat_scheduler": "tasks.schedule:SteadyRedBeatScheduler",  # RedBeat that rides out a Redis outage
        **_redbeat(settings.redis, backend),
        "redbeat_lock_timeout": int(max(2, settings.beat_lock_timeout)),
        # Beat extends its lock every loop and a waiting beat retries this often: well under the timeout.
        "beat_max_loop_interval": max(1.0, settings.beat_lock_timeout / 5),
    }


def _transport_options(target: SentinelTarget | None) -> dict[str, Any]:
    """kombu's and Celery's Sentinel options (``master_name``, ``sentinel_kwargs``); none for a plain URL.

    Both read the Sentinel nodes, the database and the master's password from the URL itself
    (``kombu/transport/redis.py`` ``SentinelChannel._sentinel_managed_pool``,
    ``celery/backends/redis.py`` ``SentinelBackend._get_pool``).
    """
    if target is None:
        return {}
    options: dict[str, Any] = {"master_name": target.master}
    if target.sentinel_kwargs():
        options["sentinel_kwargs"] = target.sentinel_kwargs()
    return options


def _redbeat(url: str, target: SentinelTarget | None) -> dict[str, Any]:
    """RedBeat's Redis: the URL as is, or through Sentinel (``redis-sentinel://`` plus the nodes and master
    in ``redbeat_redis_options``, as ``redbeat/schedulers.py`` ``get_redis`` reads them)."""
    if target is None:
        return {"redbeat_redis_url": url, "redbeat_redis_options": {}}
    host, port = target.nodes[0]
    options: dict[str, Any] = {
        "sentinels": [list(node) for node in target.nodes],
        "service_name": target.master,
        "sentinel_kwargs": target.sentinel_kwargs(),
        **target.master_kwargs(),
    }
    return {"redbeat_redis_url": f"redis-sentinel://{host}:{port}/{target.db}", "redbeat_redis_options": options}


class KindTimeLimits:
    """Celery task annotation: time limits by task-name prefix (``task_annotations`` only knows exact names).

    Views and queries get ``INSIGHTS_VIEW_TIME_LIMIT`` (nobody waits for a dashboard for long),
    ``@cron`` jobs and ``maintenance.*`` tasks ``INSIGHTS_CRON_TIME_LIMIT``; the soft limit is
    the hard one less a fifth, at most a minute (150 -> 120 s, 1800 -> 1740 s).
    """

    def __init__(self, settings: Settings) -> None:
        self.limits = {
            VIEW_PREFIX: settings.view_time_limit,
            QUERY_PREFIX: settings.view_time_limit,
            CRON_PREFIX: settings.cron_time_limit,
            MAINTENANCE_PREFIX: settings.cron_time_limit,
        }

    def annotate(self, task: Any) -> dict[str, float] | None:
        """The time limits of one task class, or None to keep the global ones."""
        for prefix, limit in self.limits.items():
            if str(task.name).startswith(prefix):
                return {"time_limit": limit, "soft_time_limit": limit - min(60.0, limit / 5)}
        return None

    def annotate_any(self) -> None:
        """No annotation for every task."""
        return None
