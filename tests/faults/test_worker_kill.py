"""A worker killed with SIGKILL in the middle of a batch: no event lost, none counted twice."""

from __future__ import annotations

import dataclasses
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.embedded import EmbeddedRedis
from tasks.storage.mongo import database_name
from tests.conftest import Pipeline, wait_for
from web.app import create_app

pytestmark = pytest.mark.faults


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
