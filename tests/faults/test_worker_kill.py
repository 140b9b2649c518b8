"""A worker killed with SIGKILL in the middle of a batch, or while it holds a message it has not
registered yet: no event lost, none counted twice."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.ops.embedded import EmbeddedRedis
from tasks.storage.mongo import database_name
from tests.conftest import Pipeline, wait_for
from web.app import create_app

pytestmark = [pytest.mark.faults, pytest.mark.slow]

COUNT = "handler.pipeline.count_deliveries"


@pytest.fixture
def deployment(settings: Settings, tmp_path: Path) -> Iterator[tuple[Insights, Pipeline]]:
    """A deployment of its own (own Redis, own databases), so killing its worker disturbs no other test."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        own = dataclasses.replace(
            settings,
            redis_url=redis_server.url,
            mongo_db_prefix=f"kill{uuid.uuid4().hex[:8]}_",
            data_dir=tmp_path / "data",
            fs_root=tmp_path / "data" / "files",
        )
        app = create_insights(own)
        pipeline = Pipeline(app, tmp_path).start()
        try:
            yield app, pipeline
        finally:
            pipeline.stop()
            app.services.close()


def test_a_worker_killed_mid_batch_loses_no_event_and_double_counts_none(
    deployment: tuple[Insights, Pipeline],
) -> None:
    app, pipeline = deployment
    client = create_app(app).test_client()
    deliveries = pymongo.MongoClient(app.settings.mongo)[database_name(app.settings.mongo_db_prefix, "pipeline")][
        "deliveries"
    ]
    run, total = uuid.uuid4().hex, 200
    response = client.post("/event", json=[{"run": run, "n": n, "slow": 0.01} for n in range(total)])
    assert response.status_code == 202
    receipt = response.get_json()["receipt"]

    wait_for(lambda: deliveries.count_documents({"run": run}) > 10, what="the slow handler to be half-way")
    handled_before_kill = deliveries.count_documents({"run": run})
    assert handled_before_kill < total
    os.killpg(pipeline.workers[0].pid, signal.SIGKILL)  # the worker and its pool children, no warning
    pipeline.add_worker()
    pipeline.wait_for_workers()

    def done() -> bool:
        return client.get(f"/receipt/{receipt}").get_json()["state"] == "done"

    wait_for(done, timeout=90, what="the batch to be handled after the worker was replaced")
    counts = {doc["_id"]: doc["deliveries"] for doc in deliveries.find({"run": run})}
    assert len(counts) == total  # none lost; counted once each (one document per event id)
    redelivered = sum(1 for n in counts.values() if n > 1)
    print(f"killed after {handled_before_kill}/{total} events; {redelivered} delivered again, counted once")
    assert client.get("/query/djt_event_count").get_json() == total  # the other handlers ran exactly once


def test_a_worker_killed_holding_a_message_it_has_not_registered_yet_loses_no_event(
    deployment: tuple[Insights, Pipeline],
) -> None:
    """kombu's Redis transport takes a message off its queue (BRPOP) before it writes it to its
    ``unacked`` hash: a worker killed in between takes the message along, and no visibility
    timeout brings it back (tests/faults/test_faults_under_load.py lost a batch so). Freezing
    the worker's main process while it waits in BRPOP makes that moment last: Redis hands it
    the message, nobody reads it, then the worker is killed. The batcher sends the task again."""
    app, pipeline = deployment
    victim = pipeline.workers[0]  # the prefork worker on the kind queues: the only one on "events"
    client = app.services.redis
    deliveries = pymongo.MongoClient(app.settings.mongo)[database_name(app.settings.mongo_db_prefix, "pipeline")][
        "deliveries"
    ]

    def whereabouts(task_id: str) -> list[str]:
        queued = [json.loads(raw)["headers"]["id"] for raw in client.lrange("events", 0, -1)]
        held = [json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")]
        return [place for place, ids in (("queued", queued), ("unacked", held)) if task_id in ids]

    runs: list[str] = []
    for _ in range(5):  # the worker may be between two BRPOPs (each waits 1 s) when frozen: try again
        run = uuid.uuid4().hex
        runs.append(run)
        os.kill(victim.pid, signal.SIGSTOP)
        batch = app.dispatch_events([{"run": run, "n": n} for n in range(50)], [COUNT])
        record = app.store.get(batch)
        assert record is not None
        task_id = record["tasks"][COUNT]["id"]
        if not whereabouts(task_id):
            break  # the frozen worker's BRPOP took it
        os.kill(victim.pid, signal.SIGCONT)
        wait_for(lambda b=batch: app.store.get(b)["state"] == "done", what="the worker to handle the batch")
    else:
        pytest.fail("the frozen worker never took a message")

    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert whereabouts(task_id) == []  # in no queue, not unacknowledged: lost to the broker
    pipeline.add_worker()
    pipeline.wait_for_workers()

    def done() -> dict[str, object] | None:
        record = app.store.get(batch)
        return record if record is not None and record["state"] == "done" else None

    record = wait_for(done, timeout=90, what="the lost task to be sent again and the batch handled")
    assert record["resent"] == 1 and record["failed"] == []
    counts = {doc["_id"]: doc["deliveries"] for doc in deliveries.find({"run": {"$in": runs}})}
    assert len(counts) == 50 * len(runs) and set(counts.values()) == {1}  # every event, once
    assert "were lost by the broker; sending them again" in (pipeline.logs / "batcher.log").read_text()
