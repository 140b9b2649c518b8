"""Exactly one active consumer per shard queue on a Redis broker (tasks/pipeline/shard_leases.py).

Real worker processes on a deployment of the test's own (prefix, queues, two shards, a
two-second lease): two shard workers started for the same shard queues, one consumes them;
SIGKILL it and the standby takes over; SIGSTOP it and the woken stale holder refuses what it
still had in hand (fencing).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from config.queues import shard_queues
from config.settings import Queues, Settings
from tasks.app import Insights, create_insights
from tasks.pipeline.batch_store import DONE
from tasks.storage.lease import Lease, Taken
from tests.conftest import COMMANDS, start_process, stop_process, wait_for

pytestmark = pytest.mark.slow

USERS = [f"u{n}" for n in range(6)]


@pytest.fixture
def deployment(settings: Settings, tmp_path: Path) -> Iterator[Insights]:
    """Queues, keys and a module of its own; a worker on its kind queues (for ``batch.record``)."""
    tag = uuid.uuid4().hex[:8]
    own = dataclasses.replace(
        settings,
        redis_prefix=f"lease{tag}:",
        queues=Queues(*(f"{name}-{tag}" for name in ("views", "queries", "events", "reports", "batch"))),
        module_packages=("tests.lease_modules",),
        shards=2,
        lease_ttl=2.0,
        data_dir=tmp_path,
        fs_root=tmp_path / "files",
    )
    app = create_insights(own)
    kind = start_process(
        own, COMMANDS.worker(own.queues.all(), concurrency=1, name=f"kind-{tag}@%h"), tmp_path / "kind.log"
    )
    yield app
    stop_process(kind)
    client = app.services.redis
    for key in client.scan_iter(f"{own.redis_prefix}*"):
        client.delete(key)
    client.delete(*own.queues.all(), *shard_queues(own.queues, own.shards))
    app.services.close()


def shard_worker(app: Insights, log: Path) -> subprocess.Popen[bytes]:
    """A shard worker process for every shard queue of the deployment."""
    queues = shard_queues(app.settings.queues, app.settings.shards)
    name = f"shard-{uuid.uuid4().hex[:6]}"
    process = start_process(app.settings, COMMANDS.shard_worker(queues, name=f"{name}@%h"), log)
    NODES[process.pid] = f"{name}@{socket.gethostname()}"
    return process


NODES: dict[int, str] = {}  # worker node name by pid


def answering(app: Insights, *processes: subprocess.Popen[bytes]) -> bool:
    """Whether every one of these workers answers a ping."""
    nodes = [NODES[p.pid] for p in processes]
    return len(app.celery.control.ping(destination=nodes, timeout=0.5)) == len(nodes)


def holders(app: Insights) -> dict[str, int | None]:
    """The pid holding each shard queue's lease (None: free)."""
    found = {}
    for queue in shard_queues(app.settings.queues, app.settings.shards):
        holder = Lease(app.services.redis, app.keys.lease(f"queue:{queue}"), "-", 1).holder()
        found[queue] = None if holder is None else int(holder.split(":")[1])
    return found


def held_by(app: Insights, process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` holds every shard queue's lease."""
    return set(holders(app).values()) == {process.pid}


def send(app: Insights, run: str, seq: int, pause: float = 0.0) -> str:
    """One batch: an event of every user with sequence number ``seq``; returns the batch id."""
    return app.dispatch_events([{"run": run, "username": u, "seq": seq, "pause": pause} for u in USERS])


def wait_done(app: Insights, batches: list[str], timeout: float = 120.0) -> None:
    """Wait until every batch is recorded done."""

    def done() -> bool:
        return all((record := app.store.get(b)) is not None and record["state"] == DONE for b in batches)

    wait_for(done, timeout=timeout, what=f"{len(batches)} batches to be handled")


def handled(app: Insights, run: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """(every handling, every out-of-order event, the last seq per user) of a run, from the module's database."""
    with pymongo.MongoClient(app.settings.mongo) as client:
        db = client[f"{app.settings.mongo_db_prefix}ordered"]
        handlings = list(db["handled"].find({"run": run}))
        violations = list(db["violations"].find({"run": run}))
        last = {doc["_id"].split(":")[1]: doc["seq"] for doc in db["last"].find() if doc["_id"].startswith(run)}
    return handlings, violations, last


def test_two_shard_workers_for_the_same_shards_one_consumes_and_the_standby_takes_over_a_killed_one(
    deployment: Insights, tmp_path: Path
) -> None:
    app, run = deployment, uuid.uuid4().hex
    first = shard_worker(app, tmp_path / "first.log")
    try:
        wait_for(lambda: held_by(app, first), what="the first shard worker to hold every lease")
        second = shard_worker(app, tmp_path / "second.log")
        try:
            wait_for(lambda: answering(app, first, second), what="both shard workers to answer")
            batches = [send(app, run, seq) for seq in range(10)]
            wait_done(app, batches)
            handlings, violations, last = handled(app, run)
            assert {h["pid"] for h in handlings} == {first.pid}  # the standby consumed nothing
            assert violations == [] and last == dict.fromkeys(USERS, 9)

            # Kill the active one while it works through a backlog: the standby takes over.
            batches = [send(app, run, seq, pause=0.05) for seq in range(10, 40)]
            wait_for(lambda: len(handled(app, run)[0]) >= 15 * len(USERS) // 2, what="part of the backlog")
            os.killpg(first.pid, signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: held_by(app, second), timeout=60, what="the standby to take every lease")
            takeover = time.monotonic() - killed
            print(f"\ntakeover after SIGKILL: {takeover:.2f} s (lease TTL {app.settings.lease_ttl:g} s)")
            wait_done(app, batches)
            handlings, violations, last = handled(app, run)
            assert violations == []  # every user's events in order (the interrupted batch ran again first)
            assert last == dict.fromkeys(USERS, 39)
            assert {h["pid"] for h in handlings if h["seq"] >= 30} == {second.pid}
        finally:
            stop_process(second)
    finally:
        if first.poll() is None:
            stop_process(first)


def test_a_paused_holder_that_wakes_up_refuses_the_task_it_had_in_hand(deployment: Insights, tmp_path: Path) -> None:
    app, run = deployment, uuid.uuid4().hex
    stale = shard_worker(app, tmp_path / "stale.log")
    try:
        wait_for(lambda: held_by(app, stale), what="the first shard worker to hold every lease")
        standby = shard_worker(app, tmp_path / "standby.log")
        try:
            wait_for(lambda: answering(app, stale, standby), what="both shard workers to answer")
            wait_done(app, [send(app, run, 0)])
            os.killpg(stale.pid, signal.SIGSTOP)
            # Redis hands the next message to the frozen worker's pending BRPOP: it sits in its socket.
            batch = send(app, run, 1)
            wait_for(lambda: held_by(app, standby), timeout=60, what="the standby to take every lease")
            os.killpg(stale.pid, signal.SIGCONT)
            wait_done(app, [batch])
            handlings, violations, last = handled(app, run)
            assert {h["pid"] for h in handlings if h["seq"] == 1} == {standby.pid}
            assert violations == [] and last == dict.fromkeys(USERS, 1)
            assert "refused" in (tmp_path / "stale.log").read_text()
        finally:
            stop_process(standby)
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
        stop_process(stale)


def test_a_lease_has_one_holder_until_released_or_expired(deployment: Insights) -> None:
    key = deployment.keys.lease(f"test:{uuid.uuid4().hex}")
    a = Lease(deployment.services.redis, key, "a", 0.3)
    b = Lease(deployment.services.redis, key, "b", 0.3)

    assert a.take() is Taken.TAKEN and b.take() is Taken.OTHER and a.take() is Taken.RENEWED
    assert a.held() and not b.held() and not b.release()
    assert a.release() and b.take() is Taken.TAKEN
    wait_for(lambda: a.take() is Taken.TAKEN, timeout=10, what="b's lease to expire")
