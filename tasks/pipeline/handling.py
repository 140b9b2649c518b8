"""Running one handler on a batch: retries with backoff, then isolation of poison events.

After ``attempts`` failed tries of the whole batch, the batch is split in halves, and
halves that fail are split again, so that the events the handler can handle are handled
and only the ones it fails on alone are returned as failures (to be dead-lettered).
Handlers should be idempotent (use ``evt.id``): a retried or split batch runs some events
again, as does a task redelivered after a worker crash.
"""

from __future__ import annotations

import json
import logging
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import redis as redis_lib
from celery.exceptions import SoftTimeLimitExceeded

from tasks.authoring.injection import EVENT, EVENTS, caller_arguments

if TYPE_CHECKING:
    from tasks.app import Insights
    from tasks.core.registry import Spec

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF = 30.0
PATIENCE = 120.0  # seconds a handler task waits for Redis to come back


@dataclass(frozen=True)
class Failure:
    """Events the handler failed on, with the last error."""

    items: Sequence[Any]
    error: str
    traceback: str


def handle(
    run: Callable[[Sequence[T]], object],
    items: Sequence[T],
    attempts: int = 1,
    backoff: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Failure]:
    """Run ``run(items)``, retrying and then isolating failures; returns what could not be handled."""
    failure = None
    for attempt in range(attempts):
        failure = _try(run, items)
        if failure is None:
            return []
        if _fatal(failure) or attempt == attempts - 1:
            break
        delay = min(MAX_BACKOFF, backoff * 2**attempt)
        sleep(random.uniform(delay / 2, delay))  # jitter: retries of many batches do not align
    assert failure is not None
    return [failure] if _fatal(failure) else _isolate(run, items, failure)


def handle_each(
    run: Callable[[Sequence[T]], object],
    items: Sequence[T],
    attempts: int = 1,
    backoff: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Failure]:
    """Run ``run([item])`` for each item on its own; after a backoff, each item that failed is
    tried again on its own, up to ``attempts`` tries in all. Returns one failure per item that
    failed every try (after a time limit: one for that item and those not yet run)."""
    pending = list(items)
    failures: list[Failure] = []
    for attempt in range(attempts):
        if attempt:
            delay = min(MAX_BACKOFF, backoff * 2 ** (attempt - 1))
            sleep(random.uniform(delay / 2, delay))
        failures = []
        for index, item in enumerate(pending):
            failure = _try(run, [item])
            if failure is not None and _fatal(failure):
                return [*failures, Failure(pending[index:], failure.error, failure.traceback)]
            if failure is not None:
                failures.append(failure)
        if not failures:
            return []
        pending = [failure.items[0] for failure in failures]
    return failures


def _isolate(run: Callable[[Sequence[T]], object], items: Sequence[T], failure: Failure) -> list[Failure]:
    if len(items) <= 1 or _fatal(failure):
        return [failure]
    middle = len(items) // 2
    failures: list[Failure] = []
    for half in (items[:middle], items[middle:]):
        half_failure = _try(run, half)
        if half_failure is not None:
            failures.extend(_isolate(run, half, half_failure))
    return failures


def _try(run: Callable[[Sequence[T]], object], items: Sequence[T]) -> Failure | None:
    try:
        run(items)
    except Exception as exc:
        return Failure(items, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return None


def _fatal(failure: Failure) -> bool:
    """A time limit is not the events' fault and splitting would only take longer."""
    return failure.error.startswith(SoftTimeLimitExceeded.__name__)


def run_handler_task(app: Insights, spec: Spec, batch_id: str, indices: list[int] | None, label: str) -> dict[str, Any]:
    """The body of a handler task: run ``spec`` on its events of a batch, dead-letter what fails.

    Returns a deterministic outcome; a task redelivered after it finished (worker killed
    before the acknowledgement) returns the stored outcome without running again. Its Redis
    calls wait out a Redis restart (``patiently``): failing here would leave the batch's
    chord, and so its record, unfinished.
    """
    redis = app.services.redis
    done = app.keys.done(batch_id, label)
    finished = patiently(lambda: redis.get(done))
    if finished is not None:
        outcome: dict[str, Any] = json.loads(finished)
        return outcome
    try:
        records = patiently(lambda: app.store.events(batch_id))
    except KeyError as exc:
        log.error("%s: %s", label, exc)
        return {"handler": label, "ok": False, "events": 0, "dead_lettered": 0, "error": str(exc)}
    if indices is not None:
        records = [records[i] for i in indices]

    takes_one = EVENT in caller_arguments(spec.func)  # a batch=False handler may take ``event``

    def run(part: Sequence[list[Any]]) -> None:
        events = [app.event(raw, id, received) for id, received, raw in part]
        app.call(spec, (), {EVENT: events[0]} if takes_one else {EVENTS: events})

    attempts = spec.options.get("attempts", app.settings.handler_attempts)
    backoff = spec.options.get("backoff", app.settings.handler_backoff)
    each = not spec.options.get("batch", True)  # batch=False: called once per event
    failures = (handle_each if each else handle)(run, records, attempts, backoff)
    for failure in failures:
        log.error("%s dead-letters %d event(s): %s", label, len(failure.items), failure.error)
        patiently(
            partial(app.dead_letters.add, spec.task_name, failure.items, failure.error, failure.traceback, batch_id)
        )
    dead = sum(len(f.items) for f in failures)
    outcome = {
        "handler": label,
        "ok": not failures,
        "events": len(records),
        "dead_lettered": dead,
        "error": failures[0].error if failures else None,
    }
    patiently(lambda: redis.set(done, json.dumps(outcome), ex=app.settings.batch_record_ttl))
    return outcome


def patiently(call: Callable[[], T], give_up_after: float = PATIENCE, sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried with growing pauses while Redis is unreachable, for ``give_up_after`` seconds."""
    deadline, pause = time.monotonic() + give_up_after, 0.2
    while True:
        try:
            return call()
        except redis_lib.ConnectionError:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("Redis is unreachable; trying again in %.1f s", pause)
            sleep(pause)
            pause = min(pause * 2, 5.0)
