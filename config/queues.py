"""Which queue each task goes to, as Celery ``task_routes`` data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kombu import Exchange, Queue

from config.settings import Queues

# Task-name prefixes, shared with the registry that names the tasks.
VIEW_PREFIX = "view."
QUERY_PREFIX = "query."
HANDLER_PREFIX = "handler."
BATCH_PREFIX = "batch."
CRON_PREFIX = "cron."  # scheduled jobs (tasks/schedule.py)
MAINTENANCE_PREFIX = "maintenance."  # housekeeping run by beat, e.g. the file-store sweeper


def default_queue(kind: str, queues: Queues) -> str:
    """The queue a task of this kind (view, query, handler, cron) uses unless told otherwise."""
    return {"view": queues.views, "query": queues.queries, "handler": queues.events, "cron": queues.reports}[kind]


SHARD_KINDS = ("user", "resource")


def shard_queue(queues: Queues, kind: str, shard: int) -> str:
    """The queue of one shard of per-user or per-resource handlers, e.g. ``events.user.3``."""
    return f"{queues.events}.{kind}.{shard}"


def queues_of_shard(queues: Queues, shard: int) -> list[str]:
    """The queues of one shard, one per kind, e.g. ``events.user.3`` and ``events.resource.3``."""
    return [shard_queue(queues, kind, shard) for kind in SHARD_KINDS]


def shard_queues(queues: Queues, shards: int) -> list[str]:
    """Every shard queue; each needs exactly one single-process consumer to keep order."""
    return [shard_queue(queues, kind, k) for kind in SHARD_KINDS for k in range(shards)]


# RabbitMQ delivers a queue declared with this argument to one consumer at a time, the others standing
# by (https://www.rabbitmq.com/docs/consumers#single-active-consumer); other brokers ignore it.
SINGLE_ACTIVE_CONSUMER = {"x-single-active-consumer": True}


def declared_queues(queues: Queues, shards: int) -> list[Queue]:
    """Celery ``task_queues``: the kind queues as usual, the shard queues with a single active consumer.

    A queue that exists on RabbitMQ without the argument cannot be declared with it (RabbitMQ answers
    ``PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer'``): drain and delete it once
    (docs/scaling.md), then let the workers declare it again.
    """
    plain = [Queue(name, Exchange(name), routing_key=name) for name in dict.fromkeys(queues.all())]
    ordered = [
        Queue(name, Exchange(name), routing_key=name, queue_arguments=dict(SINGLE_ACTIVE_CONSUMER))
        for name in shard_queues(queues, shards)
    ]
    return plain + ordered


def task_routes(queues: Queues, overrides: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Celery ``task_routes``: exact task names first (decorator ``queue=``), then globs by kind."""
    exact = {name: {"queue": queue} for name, queue in (overrides or {}).items()}
    by_kind = {
        f"{VIEW_PREFIX}*": {"queue": queues.views},
        f"{QUERY_PREFIX}*": {"queue": queues.queries},
        f"{HANDLER_PREFIX}*": {"queue": queues.events},
        f"{BATCH_PREFIX}*": {"queue": queues.events},
        f"{CRON_PREFIX}*": {"queue": queues.reports},
        f"{MAINTENANCE_PREFIX}*": {"queue": queues.reports},
    }
    return [exact, by_kind]
