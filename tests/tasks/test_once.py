"""Single jobs cluster-wide (tasks/storage/once.py): once per period, however many invoke them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from config.beat import PRUNE_EVENT_LOG_TASK, SWEEP_TASK
from tasks.app import Insights
from tasks.pipeline.dead_letters import retry_dead_letters
from tasks.storage.once import once_per_period

T = TypeVar("T")


def at_once(call: Callable[[], T], invocations: int = 2) -> list[T]:
    """Run ``call`` in ``invocations`` threads released together; their results."""
    start = threading.Barrier(invocations)

    def run() -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(invocations) as pool:
        return [f.result() for f in [pool.submit(run) for _ in range(invocations)]]


def test_of_concurrent_invocations_in_one_period_exactly_one_runs(unattended: Insights) -> None:
    job = f"test-{uuid.uuid4().hex}"
    claims = at_once(lambda: once_per_period(unattended.services.redis, unattended.keys, job, 60), invocations=8)

    assert sorted(claims) == [False] * 7 + [True]


def test_each_period_runs_once(unattended: Insights) -> None:
    client, keys, job = unattended.services.redis, unattended.keys, f"test-{uuid.uuid4().hex}"

    assert once_per_period(client, keys, job, 60, now=6000.0)
    assert not once_per_period(client, keys, job, 60, now=6059.9)
    assert once_per_period(client, keys, job, 60, now=6060.0)
    assert client.pttl(keys.once(job, 101)) > 60_000  # kept two periods: a late duplicate is still refused


def test_two_concurrent_sweeps_and_prunes_run_once(unattended: Insights) -> None:
    for task in (SWEEP_TASK, PRUNE_EVENT_LOG_TASK):
        run = unattended.celery.tasks[task]
        client = unattended.services.redis
        before = {key for key in client.scan_iter(unattended.keys.once(task, 0).rsplit(":", 1)[0] + ":*")}
        at_once(run)
        after = {key for key in client.scan_iter(unattended.keys.once(task, 0).rsplit(":", 1)[0] + ":*")}
        assert len(after - before) == 1  # one claim: the other invocation found the period taken and skipped
        assert at_once(run) == [0, 0]  # nothing more in this period, however often beats send it


def test_two_concurrent_dead_letter_retries_dispatch_each_letter_once(unattended: Insights) -> None:
    handler = unattended.handler_names()[0]
    for n in range(3):
        unattended.dead_letters.add(handler, [[f"id-{n}", 0.0, {"n": n}]], "Boom", "", "batch")

    outcomes = at_once(lambda: retry_dead_letters(unattended.dead_letters, unattended.dispatcher))

    assert outcomes.count(None) == 1  # the other found the period taken and sent nothing
    assert unattended.dead_letters.count() == 0
