"""Faults under a steady event load over real HTTP, each while events are in flight.

(a) a worker SIGKILLed, (b) Redis restarted (AOF everysec), (c) the MongoDB-protocol
server restarted, (d) the web process SIGKILLed. After recovery every event answered 202
is in the idempotent handler's results exactly once (one document per event id), and the
processes that were not killed recovered by themselves (same PIDs, serving). A killed
process is restarted by the test, as a supervisor would. See tests/faults/harness.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from tests.faults.harness import Deployment, Load, Tally, deployment, row

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(150)]

RATE = 600.0  # events/s, in requests of 20 events from 3 sender threads
BEFORE = 3.0  # seconds of load before the fault
AFTER = 4.0  # seconds of load after the fault was healed
REDIS_DOWN = 6.0  # longer than redis-py's own retries (10, backoff capped at 1 s): clients see errors
MONGO_DOWN = 12.0  # longer than pymongo's server selection (10 s): handler calls fail and are retried


def under_load(
    dep: Deployment, fault: str, inject: Callable[[Load], str], report: list[str], replaced: tuple[str, ...] = ()
) -> tuple[Tally, Load]:
    """Run the load, inject the fault mid-load, heal, stop the load, settle, check and report."""
    started = time.monotonic()
    pids = dep.pids()
    load = Load(dep.web.url, rate=RATE).start()
    try:
        load.wait_acknowledged(more_than=0)
        time.sleep(BEFORE)
        recovery = inject(load)
        acknowledged_at_heal = len(load.acknowledged())
        time.sleep(AFTER)
    finally:
        load.stop()
    dep.settle(load)
    letters = dep.dead_letters()
    if letters:  # as an operator would, once the cause is gone
        recovery += f"; {letters} dead letter(s), `deadletters retry`: {dep.retry_dead_letters()}"
        dep.settle(load)
    tally = dep.tally(load)
    pending = dep.receipts_not_done()  # reported, not asserted: see the report in var/faults.md
    seconds = time.monotonic() - started
    report.append(row(fault, tally, load, pending, recovery, seconds))
    print(
        f"\n{fault}: {tally} answers {dict(load.statuses)}, {pending} receipts not done, {seconds:.1f} s ({recovery})"
    )

    assert not load.refused, f"requests refused: {load.refused}"
    assert tally.lost == 0, f"{tally.lost} acknowledged events lost, e.g. {tally.lost_ids}; logs in {dep.logs}"
    assert tally.unknown == 0
    assert tally.handled == tally.acknowledged  # each counted once: one document per event id
    assert len(load.acknowledged()) > acknowledged_at_heal, "nothing was acknowledged after the fault was healed"
    # Recovered by themselves: the same processes (but the replaced one) are alive and serving.
    now = dep.pids()
    assert {k: now[k] for k in pids if k not in replaced} == {k: v for k, v in pids.items() if k not in replaced}
    dead = [name for name, up in dep.alive().items() if not up and name not in replaced]
    assert not dead, f"processes died: {dead}; logs in {dep.logs}"
    assert dep.web.alive()
    workers = sum(1 for w in dep.pipeline.workers if w.poll() is None)
    assert dep.workers_answering(workers) == workers
    assert dep.web.serving()
    return tally, load


def test_a_worker_sigkilled_under_load(settings: Settings, tmp_path: Path, fault_report: list[str]) -> None:
    with deployment(settings, tmp_path) as dep:
        victim = dep.pipeline.workers[0]  # the prefork worker on the kind queues: runs count_deliveries

        def kill_worker(load: Load) -> str:
            os.killpg(victim.pid, signal.SIGKILL)  # the worker and its pool children, no warning
            victim.wait()
            time.sleep(0.5)  # a supervisor's restart delay
            dep.pipeline.add_worker()
            dep.pipeline.wait_for_workers()
            return "worker SIGKILLed, a new one started (as a supervisor would)"

        under_load(dep, "(a) worker SIGKILL", kill_worker, fault_report, replaced=("worker0",))
        assert victim.returncode == -signal.SIGKILL


def test_b_redis_restarted_under_load(settings: Settings, tmp_path: Path, fault_report: list[str]) -> None:
    with deployment(settings, tmp_path) as dep:

        def restart_redis(load: Load) -> str:
            answered_503 = load.statuses["503"]
            dep.redis_server.stop()  # SIGTERM: Redis writes its AOF out and exits
            time.sleep(REDIS_DOWN)
            during = load.statuses["503"] - answered_503
            dep.redis_server.start()  # same port, same AOF
            assert during > 0, f"no request was refused with 503 while Redis was down: {dict(load.statuses)}"
            return f"Redis down {REDIS_DOWN:g} s (same port, AOF), {during} requests answered 503 meanwhile"

        under_load(dep, "(b) Redis restart", restart_redis, fault_report)


def test_c_mongo_restarted_under_load(settings: Settings, tmp_path: Path, fault_report: list[str]) -> None:
    # An nx-27017 of its own (the session's is shared); more patient handler retries than the
    # suite's settings (0.02 s backoff), as a deployment expecting database restarts would set.
    with deployment(settings, tmp_path, own_mongo=True, handler_attempts=6, handler_backoff=0.5) as dep:
        assert dep.mongo_server is not None
        mongo = dep.mongo_server

        def restart_mongo(load: Load) -> str:
            mongo.stop()
            time.sleep(MONGO_DOWN)
            mongo.start()  # same port, same data
            return f"nx-27017 down {MONGO_DOWN:g} s (same port, same data)"

        under_load(dep, "(c) MongoDB restart", restart_mongo, fault_report)


def test_d_web_sigkilled_under_load(settings: Settings, tmp_path: Path, fault_report: list[str]) -> None:
    with deployment(settings, tmp_path) as dep:

        def kill_web(load: Load) -> str:
            errors = load.statuses["error"]
            dep.web.kill()  # gunicorn master and workers, mid-request
            time.sleep(1.0)  # a supervisor's restart delay
            dep.web.start()  # same port
            failed = load.statuses["error"] - errors
            return f"web SIGKILLed, restarted on the same port; {failed} requests failed meanwhile"

        _, load = under_load(dep, "(d) web SIGKILL", kill_web, fault_report, replaced=("web",))
        assert load.statuses["error"] > 0  # requests were in flight or refused while it was down
