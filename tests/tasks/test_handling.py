"""Retries, backoff and isolation of poison events (no infrastructure needed: plain functions)."""

from __future__ import annotations

from collections.abc import Sequence

from celery.exceptions import SoftTimeLimitExceeded

from tasks.pipeline.handling import handle


class Recorder:
    """A handler that fails on batches containing a poison value, recording every call."""

    def __init__(self, poison: set[int], fail_first: int = 0) -> None:
        self.poison = poison
        self.fail_first = fail_first
        self.calls: list[list[int]] = []
        self.handled: list[int] = []

    def __call__(self, items: Sequence[int]) -> None:
        self.calls.append(list(items))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("database restarting")
        bad = self.poison.intersection(items)
        if bad:
            raise ValueError(f"poison {sorted(bad)}")
        self.handled.extend(items)


def test_a_batch_that_succeeds_runs_once() -> None:
    run = Recorder(set())
    assert handle(run, list(range(10)), attempts=3) == []
    assert run.calls == [list(range(10))]


def test_a_transient_failure_is_retried_with_growing_backoff() -> None:
    run, waits = Recorder(set(), fail_first=2), []
    assert handle(run, [1, 2, 3], attempts=3, backoff=1.0, sleep=waits.append) == []
    assert len(run.calls) == 3 and run.handled == [1, 2, 3]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


def test_one_poison_event_in_500_is_isolated_and_the_others_are_handled() -> None:
    run = Recorder({137})
    failures = handle(run, list(range(500)), attempts=2, sleep=lambda _: None)
    assert [list(f.items) for f in failures] == [[137]]
    assert "ValueError: poison [137]" in failures[0].error and "Traceback" in failures[0].traceback
    assert sorted(run.handled) == [i for i in range(500) if i != 137]
    assert len(run.calls) <= 2 + 2 * 9  # the retries, then two halves per level of a binary split


def test_several_poison_events_are_each_isolated() -> None:
    run = Recorder({0, 250, 499})
    failures = handle(run, list(range(500)), attempts=1)
    assert sorted(f.items[0] for f in failures) == [0, 250, 499]
    assert len(run.handled) == 497


def test_a_time_limit_is_not_split_but_fails_the_batch() -> None:
    def too_slow(items: Sequence[int]) -> None:
        raise SoftTimeLimitExceeded()

    failures = handle(too_slow, list(range(8)), attempts=3, sleep=lambda _: None)
    assert [list(f.items) for f in failures] == [list(range(8))]


def test_redis_calls_wait_out_a_restart_and_give_up_in_the_end() -> None:
    import redis

    from tasks.pipeline.handling import patiently

    answers = iter([redis.ConnectionError("down"), redis.ConnectionError("down"), "back"])

    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    pauses: list[float] = []
    assert patiently(call, sleep=pauses.append) == "back"
    assert pauses == [0.2, 0.4]

    def always_down() -> str:
        raise redis.ConnectionError("down")

    try:
        patiently(always_down, give_up_after=0.0, sleep=pauses.append)
    except redis.ConnectionError:
        pass
    else:
        raise AssertionError("patiently should give up after its time")
