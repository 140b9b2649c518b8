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
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import redis as redis_lib
from celery.exceptions import SoftTimeLimitExceeded

from tasks.authoring.events import Event
from tasks.authoring.injection import EVENT, EVENTS, caller_arguments
from tasks.core.registry import Spec
from tasks.core.steps import through
from tasks.pipeline.batch_store import BatchStore
from tasks.pipeline.dead_letters import DeadLetters
from tasks.storage.keys import Keys

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


@dataclass(frozen=True)
class Retries:
    """How often a handler is tried on the same events (``attempts`` in all), and the pause before
    each try again: ``backoff`` seconds, doubling each time up to ``MAX_BACKOFF``, with jitter."""

    attempts: int = 1
    backoff: float = 0.0
    sleep: Callable[[float], None] = time.sleep

    def pause(self, retry: int) -> None:
        """Wait before try again number ``retry`` (0 for the first)."""
        delay = min(MAX_BACKOFF, self.backoff * 2**retry)
        self.sleep(random.uniform(delay / 2, delay))  # jitter: retries of many batches do not align


def handle(run: Callable[[Sequence[T]], object], items: Sequence[T], retries: Retries = Retries()) -> list[Failure]:
    """Run ``run(items)``, retrying and then isolating failures; returns what could not be handled."""
    failure = None
    for attempt in range(retries.attempts):
        if attempt:
            retries.pause(attempt - 1)
        failure = _try(run, items)
        if failure is None:
            return []
        if _fatal(failure):
            return [failure]
    assert failure is not None
    return _isolate(run, items, failure)


def handle_each(
    run: Callable[[Sequence[T]], object], items: Sequence[T], retries: Retries = Retries()
) -> list[Failure]:
    """Run ``run([item])`` for each item on its own; after a pause, each item that failed is tried
    again on its own, up to ``retries.attempts`` tries in all. Returns one failure per item that
    failed every try (after a time limit: one for that item and those not yet run)."""
    pending = list(items)
    failures: list[Failure] = []
    for attempt in range(retries.attempts):
        if attempt:
            retries.pause(attempt - 1)
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


@dataclass(frozen=True)
class HandlerRun:
    """One handler task: a handler on its events of a batch (all, or those at ``indices``)."""

    spec: Spec
    batch_id: str
    indices: list[int] | None
    label: str


Outcome = dict[str, Any]
HandlerStep = Callable[[HandlerRun, Callable[[HandlerRun], Outcome]], Outcome]


def remember_outcome(client: Callable[[], redis_lib.Redis], keys: Keys, ttl: float) -> HandlerStep:
    """A handler task's outcome is stored (in ``client()``), and a task redelivered after it finished
    (worker killed before the acknowledgement) returns the stored outcome without running again."""

    def step(run: HandlerRun, next: Callable[[HandlerRun], Outcome]) -> Outcome:
        redis, done = client(), keys.done(run.batch_id, run.label)
        finished = patiently(lambda: redis.get(done))
        if finished is not None:
            stored: Outcome = json.loads(finished)
            return stored
        outcome = next(run)
        patiently(lambda: redis.set(done, json.dumps(outcome), ex=int(ttl)))
        return outcome

    return step


class HandlerTasks:
    """The body of every handler task: a run goes through ``steps`` (``remember_outcome`` first),
    then the handler runs on its events with retries and isolation of poison events, and what
    fails every try is dead-lettered. Returns the outcome for the batch record; raises only what a
    step raises to refuse the task (``fencing``'s ``Ignore``).

    Its Redis calls wait out a Redis restart (``patiently``): failing here would leave the
    batch's chord, and so its record, unfinished.
    """

    def __init__(
        self,
        steps: list[HandlerStep],
        store: BatchStore,
        dead_letters: DeadLetters,
        call: Callable[[Spec, dict[str, Any]], object],
        event: Callable[[dict[str, Any], str, float], Event],
        retries: Retries,
    ) -> None:
        self.steps = steps
        self._store = store
        self._dead_letters = dead_letters
        self._call = call
        self._event = event
        self._retries = retries

    def run(self, run: HandlerRun) -> Outcome:
        """Run one handler task of a batch through the steps; returns its outcome."""
        return through(self.steps, self._handle)(run)

    def _handle(self, run: HandlerRun) -> Outcome:
        spec, label = run.spec, run.label
        try:
            records = patiently(lambda: self._store.events(run.batch_id))
        except KeyError as exc:
            log.error("%s: %s", label, exc)
            return {"handler": label, "ok": False, "events": 0, "dead_lettered": 0, "error": str(exc)}
        if run.indices is not None:
            records = [records[i] for i in run.indices]

        takes_one = EVENT in caller_arguments(spec.func)  # a batch=False handler may take ``event``

        def call(part: Sequence[list[Any]]) -> None:
            events = [self._event(raw, id, received) for id, received, raw in part]
            self._call(spec, {EVENT: events[0]} if takes_one else {EVENTS: events})

        retries = replace(
            self._retries,
            attempts=spec.options.get("attempts", self._retries.attempts),
            backoff=spec.options.get("backoff", self._retries.backoff),
        )
        each = not spec.options.get("batch", True)  # batch=False: called once per event
        failures = (handle_each if each else handle)(call, records, retries)
        for f in failures:
            log.error("%s dead-letters %d event(s): %s", label, len(f.items), f.error)
            patiently(partial(self._dead_letters.add, spec.task_name, f.items, f.error, f.traceback, run.batch_id))
        return {
            "handler": label,
            "ok": not failures,
            "events": len(records),
            "dead_lettered": sum(len(f.items) for f in failures),
            "error": failures[0].error if failures else None,
        }


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
