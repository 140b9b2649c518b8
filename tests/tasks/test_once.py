"""Single jobs cluster-wide (tasks/storage/once.py): once per period, however many invoke them."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from pymongo.errors import PyMongoError

from config.beat import PRUNE_EVENT_LOG_TASK, SWEEP_TASK
from tasks.app import Insights, create_insights
from tasks.ops.embedded import free_port
from tasks.pipeline.dead_letters import retry_dead_letters
from tasks.storage.once import once_per_period, release_period, run_once_per_period

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


def period_claims(app: Insights, task: str) -> set[bytes]:
    """The Redis keys of ``task``'s claimed periods."""
    return set(app.services.redis.scan_iter(app.keys.once(task, 0).rsplit(":", 1)[0] + ":*"))


@pytest.mark.parametrize("task", [SWEEP_TASK, PRUNE_EVENT_LOG_TASK])
def test_a_job_that_fails_gives_its_period_back(unattended: Insights, task: str) -> None:
    # The same deployment (Redis, prefix) with its MongoDB unreachable: a closed port, a short wait.
    mongo_down = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300"
    settings = dataclasses.replace(unattended.settings, mongo_url=mongo_down, sweep_interval=1e6)
    broken = create_insights(settings)
    try:
        with pytest.raises(PyMongoError):
            broken.celery.tasks[task]()
    finally:
        broken.services.close()
    assert period_claims(unattended, task) == set()  # the failed run did not use the period up

    healthy = create_insights(dataclasses.replace(unattended.settings, sweep_interval=1e6))
    try:
        healthy.celery.tasks[task]()  # runs in the same period, once MongoDB is back
        assert len(period_claims(healthy, task)) == 1
    finally:
        healthy.services.close()


def test_a_claim_is_released_only_by_its_holder(unattended: Insights) -> None:
    client, keys, job = unattended.services.redis, unattended.keys, f"test-{uuid.uuid4().hex}"

    def fails() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_once_per_period(client, keys, job, 60, fails, skipped=0, now=6000.0)
    assert run_once_per_period(client, keys, job, 60, lambda: 1, skipped=0, now=6001.0) == 1  # given back
    assert run_once_per_period(client, keys, job, 60, lambda: 2, skipped=0, now=6002.0) == 0  # used up
    client.set(keys.once(job, 100), "someone else")
    release_period(client, keys, job, 60, "not their claim", now=6003.0)
    assert client.get(keys.once(job, 100)) == b"someone else"


def test_two_concurrent_dead_letter_retries_dispatch_each_letter_once(unattended: Insights) -> None:
    handler = unattended.handler_names()[0]
    ids = [unattended.dead_letters.add(handler, [[f"id-{n}", 0.0, {"n": n}]], "Boom", "", "batch") for n in range(6)]

    outcomes = at_once(lambda: retry_dead_letters(unattended.dead_letters, unattended.dispatcher), invocations=4)

    sent = [letter for outcome in outcomes for letter in outcome.letters]
    assert sorted(sent) == sorted(ids)  # each letter by exactly one of the retries
    assert unattended.dead_letters.count() == 0


def test_a_retry_of_one_handler_right_after_another_handlers_sends_its_letters(unattended: Insights) -> None:
    first, second = unattended.handler_names()[:2]
    a = unattended.dead_letters.add(first, [["id-a", 0.0, {"n": 1}]], "Boom", "", "batch")
    b = unattended.dead_letters.add(second, [["id-b", 0.0, {"n": 2}]], "Boom", "", "batch")

    assert retry_dead_letters(unattended.dead_letters, unattended.dispatcher, first).letters == [a]
    assert retry_dead_letters(unattended.dead_letters, unattended.dispatcher, second).letters == [b]
    assert retry_dead_letters(unattended.dead_letters, unattended.dispatcher).letters == []  # nothing left


def test_letters_whose_dispatch_fails_are_kept(unattended: Insights) -> None:
    unattended.dead_letters.add("no.such.handler", [["id-x", 0.0, {"n": 1}]], "Boom", "tb", "batch-x")

    with pytest.raises(Exception):  # noqa: B017 - whatever the dispatcher raises for an unknown task
        retry_dead_letters(unattended.dead_letters, unattended.dispatcher)

    [kept] = unattended.dead_letters.list()
    assert (kept["handler"], kept["events"], kept["traceback"], kept["batch"]) == (
        "no.such.handler",
        [["id-x", 0.0, {"n": 1}]],
        "tb",
        "batch-x",
    )
