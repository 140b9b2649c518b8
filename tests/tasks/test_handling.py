"""Retries, backoff and isolation of poison events (no infrastructure needed: plain functions)."""

from __future__ import annotations

from collections.abc import Sequence

from celery.exceptions import SoftTimeLimitExceeded

from tasks.pipeline.handling import Retries, handle, handle_each


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
    assert handle(run, list(range(10)), Retries(attempts=3)) == []
    assert run.calls == [list(range(10))]


def test_a_transient_failure_is_retried_with_growing_backoff() -> None:
    run, waits = Recorder(set(), fail_first=2), []
    assert handle(run, [1, 2, 3], Retries(attempts=3, backoff=1.0, sleep=waits.append)) == []
    assert len(run.calls) == 3 and run.handled == [1, 2, 3]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


def test_one_poison_event_in_500_is_isolated_and_the_others_are_handled() -> None:
    run = Recorder({137})
    failures = handle(run, list(range(500)), Retries(attempts=2, sleep=lambda _: None))
    assert [list(f.items) for f in failures] == [[137]]
    assert "ValueError: poison [137]" in failures[0].error and "Traceback" in failures[0].traceback
    assert sorted(run.handled) == [i for i in range(500) if i != 137]
    assert len(run.calls) <= 2 + 2 * 9  # the retries, then two halves per level of a binary split


def test_several_poison_events_are_each_isolated() -> None:
    run = Recorder({0, 250, 499})
    failures = handle(run, list(range(500)), Retries(attempts=1))
    assert sorted(f.items[0] for f in failures) == [0, 250, 499]
    assert len(run.handled) == 497


def test_a_time_limit_is_not_split_but_fails_the_batch() -> None:
    def too_slow(items: Sequence[int]) -> None:
        raise SoftTimeLimitExceeded()

    failures = handle(too_slow, list(range(8)), Retries(attempts=3, sleep=lambda _: None))
    assert [list(f.items) for f in failures] == [list(range(8))]


# batch=False: one event per call -------------------------------------------------------
def test_each_item_is_run_on_its_own() -> None:
    run = Recorder(set())
    assert handle_each(run, [1, 2, 3], Retries(attempts=3)) == []
    assert run.calls == [[1], [2], [3]]


def test_only_the_failing_items_are_retried_each_on_its_own_with_growing_backoff() -> None:
    run, waits = Recorder({2, 4}), []
    failures = handle_each(run, [1, 2, 3, 4, 5], Retries(attempts=3, backoff=1.0, sleep=waits.append))
    assert [list(f.items) for f in failures] == [[2], [4]]
    assert "ValueError: poison [2]" in failures[0].error
    assert run.calls == [[1], [2], [3], [4], [5], [2], [4], [2], [4]]
    assert run.handled == [1, 3, 5]
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # one pause per round


def test_an_item_that_fails_once_is_handled_on_its_retry() -> None:
    run = Recorder(set(), fail_first=1)
    assert handle_each(run, [1, 2], Retries(attempts=2, sleep=lambda _: None)) == []
    assert run.calls == [[1], [2], [1]] and run.handled == [2, 1]


def test_a_time_limit_fails_the_item_and_the_items_not_yet_run() -> None:
    calls: list[list[int]] = []

    def slow_on_three(items: Sequence[int]) -> None:
        calls.append(list(items))
        if items[0] == 3:
            raise SoftTimeLimitExceeded()

    failures = handle_each(slow_on_three, [1, 2, 3, 4, 5], Retries(attempts=3, sleep=lambda _: None))
    assert [list(f.items) for f in failures] == [[3, 4, 5]]
    assert calls == [[1], [2], [3]]


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
