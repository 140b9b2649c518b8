"""``/health``: can we reach the broker, Redis and MongoDB; how long are the queues; is intake keeping up.

503 ("unavailable", with ``reasons``) when a dependency is down, or when the oldest entry
waiting in the intake stream is older than ``INSIGHTS_HEALTH_MAX_BACKLOG_AGE`` seconds (no
batcher running, or batchers falling behind). That age is the backlog measure: Celery
messages carry no send time (nor does kombu's Redis envelope), so the Celery queues are
reported by length only; stalled or too few workers show there, as lengths that keep growing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymongo
from flask import Blueprint, Response
from kombu.exceptions import ChannelError

from tasks.app import Insights
from tasks.codec.serialization import dumps_plain
from web.api import insights

health = Blueprint("health", __name__)

PROBE_TIMEOUT = 2.0  # seconds each dependency gets to answer


@health.get("/health")
def health_report() -> Response:
    """Reachability of broker, result backend and MongoDB, queue lengths, intake backlog (503 if down or behind)."""
    app = insights()
    checks = {
        "broker": _timed(lambda: _ping_broker(app)),
        "redis": _timed(lambda: app.services.redis.ping()),
        "mongo": _timed(lambda: _ping_mongo(app)),
    }
    report: dict[str, Any] = {"checks": checks}
    reasons = [f"{name} unreachable: {check['error']}" for name, check in checks.items() if not check["ok"]]
    if checks["broker"]["ok"]:
        report["queues"] = _queue_lengths(app)
    if checks["redis"]["ok"]:
        intake = report["intake"] = _intake(app)
        report["dead_letters"] = app.dead_letters.count()
        if not intake["ok"]:
            reasons.append(
                f"intake backlog: the oldest waiting entry is {intake['oldest_seconds']:g} s old, more than "
                f"{intake['max_seconds']:g} s (INSIGHTS_HEALTH_MAX_BACKLOG_AGE): is a batcher running and keeping up?"
            )
    healthy = not reasons
    report["status"] = "ok" if healthy else "unavailable"
    report["reasons"] = reasons
    return Response(dumps_plain(report), status=200 if healthy else 503, mimetype="application/json")


def _timed(probe: Callable[[], object]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


def _ping_mongo(app: Insights) -> None:
    with pymongo.timeout(PROBE_TIMEOUT):
        app.services.mongo.admin.command("ping")


def _ping_broker(app: Insights) -> None:
    with app.celery.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT)


def _queue_lengths(app: Insights) -> dict[str, int]:
    """Messages waiting in each queue."""
    lengths: dict[str, int] = {}
    with app.celery.connection_for_read() as connection:
        for queue in app.settings.queues.all():
            with connection.channel() as channel:  # a failed passive declare closes its channel
                try:
                    lengths[queue] = channel.queue_declare(queue, passive=True).message_count
                except ChannelError:
                    lengths[queue] = 0  # no such queue (an empty Redis list does not exist): nothing waits
    return lengths


def _intake(app: Insights) -> dict[str, Any]:
    """Events accepted but not yet batched: how many entries, how long the oldest has waited, and whether that is ok."""
    intake = app.intake
    waited = intake.oldest_age()
    age = None if waited is None else round(waited, 3)
    limit = app.settings.health_max_backlog_age
    ok = age is None or age <= limit
    return {"backlog": intake.backlog(), "oldest_seconds": age, "max_seconds": limit, "ok": ok}
