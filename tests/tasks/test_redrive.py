"""Redrive: handler tasks (and batch.record) whose broker messages were lost are sent again.

No worker consumes this deployment's queues (a Redis database of its own), so the broker's
state is exactly what the test makes it: a message taken off its queue and never written
to ``unacked`` is what kombu's Redis transport leaves behind when a worker is killed between
its ``BRPOP`` and the bookkeeping of the message (tests/faults/test_worker_kill.py kills a
real worker at that moment). Handler tasks are run in this process, as a worker would.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.pipeline.batcher import Batcher
from tasks.pipeline.redrive import MAX_REDRIVES
from tasks.storage.lease import Lease, Taken
from tasks.storage.mongo import database_name

COUNT = "handler.pipeline.count_deliveries"
IN_ORDER = "handler.pipeline.in_order"


@pytest.fixture
def app(settings: Settings, tmp_path: Path) -> Iterator[Insights]:
    """A deployment on a Redis database of its own that no worker or batcher reads."""
    assert settings.redis_url is not None
    own = dataclasses.replace(
        settings,
        redis_url=settings.redis_url.rsplit("/", 1)[0] + "/9",
        mongo_db_prefix=f"redrive{uuid.uuid4().hex[:8]}_",
        data_dir=tmp_path / "data",
        fs_root=tmp_path / "data" / "files",
    )
    insights = create_insights(own)
    insights.services.redis.flushdb()
    yield insights
    insights.services.redis.flushdb()
    insights.services.close()


def look(app: Insights) -> Any:
    """One redrive pass as the batcher makes it, as if the batches were sent long ago."""
    return app.redriver().run(now=time.time() + app.settings.redrive_after + 1)


def queued(app: Insights, queue: str) -> list[dict[str, Any]]:
    """The task messages waiting in a queue, oldest first."""
    return [json.loads(raw) for raw in reversed(app.services.redis.lrange(queue, 0, -1))]


def take(app: Insights, queue: str) -> dict[str, Any]:
    """Take the oldest message off a queue as a worker's BRPOP does; the worker then dies with it."""
    raw = app.services.redis.rpop(queue)
    assert raw is not None
    return dict(json.loads(raw))


def hold(app: Insights, message: dict[str, Any]) -> None:
    """Register a taken message as unacknowledged, as kombu does once the worker has read it."""
    tag = message["properties"]["delivery_tag"]
    info = message["properties"]["delivery_info"]
    client = app.services.redis
    client.zadd("unacked_index", {tag: time.time()})
    client.hset("unacked", tag, json.dumps([message, info["exchange"], info["routing_key"]]))


def run_task(app: Insights, message: dict[str, Any]) -> Any:
    """Run a taken handler task in this process (what a worker does, without the chord bookkeeping)."""
    batch_id, indices, label = json.loads(_body(message))["__value__"][0]["__value__"]
    return app.run_handler(app.handler_spec(message["headers"]["task"]), batch_id, indices, label)


def _body(message: dict[str, Any]) -> str:
    return base64.b64decode(message["body"]).decode()


def deliveries(app: Insights, run: str) -> dict[str, int]:
    client: pymongo.MongoClient[dict[str, Any]] = app.services.mongo
    collection = client[database_name(app.settings.mongo_db_prefix, "pipeline")]["deliveries"]
    return {doc["_id"]: doc["deliveries"] for doc in collection.find({"run": run})}


def events(n: int = 5) -> tuple[str, list[dict[str, Any]]]:
    run = uuid.uuid4().hex
    return run, [{"run": run, "n": k, "user": f"u{k}"} for k in range(n)]


def test_the_record_names_every_task_message_and_the_batch_is_indexed_until_done(app: Insights) -> None:
    _, raw = events()
    batch = app.dispatch_events(raw, [COUNT, IN_ORDER])
    record = app.store.get(batch)
    assert record is not None
    sent = {m["headers"]["id"] for q in {ref["queue"] for ref in record["tasks"].values()} for m in queued(app, q)}
    assert {ref["id"] for ref in record["tasks"].values()} == sent
    ref = record["tasks"][COUNT]
    assert (ref["task"], ref["indices"], ref["queue"]) == (COUNT, None, "events")
    assert app.services.redis.zscore(app.keys.pending_batches, batch) is not None
    app.record_batch([], batch)
    assert app.services.redis.zscore(app.keys.pending_batches, batch) is None


def test_tasks_queued_or_held_unacknowledged_are_not_sent_again(app: Insights) -> None:
    _, raw = events()
    batch = app.dispatch_events(raw, [COUNT])
    assert not look(app)  # queued
    hold(app, take(app, "events"))
    assert not look(app)  # a worker holds it (a dead one's comes back after the visibility timeout)
    assert queued(app, "events") == []
    assert app.store.get(batch)["resent"] == 0  # type: ignore[index]


def test_a_pass_right_after_another_looks_too(app: Insights) -> None:
    _, raw = events()
    batch = app.dispatch_events(raw, [COUNT])
    later = time.time() + app.settings.redrive_after + 1
    redriver = app.redriver()
    assert not redriver.run(now=later)  # queued: nothing to do
    take(app, "events")  # lost right after
    assert redriver.run(now=later).handlers == {batch: [COUNT]}  # the next look finds it at once


def test_only_the_batcher_holding_the_active_batchers_lease_redrives(app: Insights) -> None:
    _, raw = events()
    batch = app.dispatch_events(raw, [COUNT])
    take(app, "events")  # lost
    other = Lease(app.services.redis, app.keys.lease("batcher"), "another batcher", 30.0)
    assert other.take() is Taken.TAKEN
    standby = Batcher(app, consumer="standby")
    try:
        standby.redriver = app.redriver(after=0.0)
        standby.redrive()  # a standby (or a batcher that lost the lease) does not look
        assert queued(app, "events") == [] and app.store.get(batch)["resent"] == 0  # type: ignore[index]
        assert other.release() and standby.lease.take() is Taken.TAKEN
        standby.redrive()  # the active batcher does
        assert len(queued(app, "events")) == 1 and app.store.get(batch)["resent"] == 1  # type: ignore[index]
    finally:
        standby.lease.release()
        standby.close()


def test_nothing_is_looked_at_before_redrive_after(app: Insights) -> None:
    _, raw = events()
    app.dispatch_events(raw, [COUNT])
    take(app, "events")
    assert not app.redriver().run(now=time.time() + 1)


def test_a_handler_task_the_broker_lost_is_sent_again_once_the_others_have_run(app: Insights) -> None:
    run, raw = events()
    batch = app.dispatch_events(raw, [COUNT, IN_ORDER])
    record = app.store.get(batch)
    assert record is not None
    lost = take(app, "events")  # the count_deliveries message: a killed worker had read it
    assert lost["headers"]["id"] == record["tasks"][COUNT]["id"]
    shard_queues = sorted({ref["queue"] for label, ref in record["tasks"].items() if label != COUNT})

    # While the other handler tasks wait, nothing is sent: a batch.record of a chord of the
    # lost task alone would finish the batch (and drop its events) before they ran.
    assert not look(app)
    for queue in shard_queues:
        run_task(app, take(app, queue))

    redriven = look(app)
    assert redriven.handlers == {batch: [COUNT]}
    [again] = queued(app, "events")
    assert again["headers"]["task"] == COUNT and again["headers"]["id"] != lost["headers"]["id"]
    assert json.loads(_body(again))["__value__"][0]["__value__"] == [batch, None, COUNT]
    record = app.store.get(batch)
    assert record is not None
    assert (record["tasks"][COUNT]["id"], record["resent"], record["state"]) == (again["headers"]["id"], 1, "pending")
    assert not look(app)  # the new message is queued: nothing more to do

    outcome = run_task(app, take(app, "events"))
    counts = deliveries(app, run)
    assert len(counts) == len(raw) and set(counts.values()) == {1}
    app.record_batch([outcome], batch)  # the new chord's batch.record
    record = app.store.get(batch)
    assert record is not None
    assert record["state"] == "done" and record["failed"] == []
    assert all(o is not None and o["ok"] for o in record["handlers"].values())  # the others' kept outcomes
    assert app.services.redis.zscore(app.keys.pending_batches, batch) is None


def test_a_lost_batch_record_is_sent_again_alone(app: Insights) -> None:
    _, raw = events()
    batch = app.dispatch_events(raw, [COUNT])
    run_task(app, take(app, "events"))  # ran, but its worker died before publishing batch.record
    assert look(app).records == [batch]
    [body] = queued(app, "events")
    assert body["headers"]["task"] == "batch.record"
    assert body["headers"]["id"] == app.store.get(batch)["body"]  # type: ignore[index]
    assert not look(app)
    assert json.loads(_body(take(app, "events")))["__value__"][1] == {"batch_id": batch}
    app.record_batch([], batch)  # what it runs: the outcomes are the ones the handler tasks kept
    record = app.store.get(batch)
    assert record is not None and record["state"] == "done" and record["handlers"][COUNT]["ok"]


def test_a_task_lost_again_and_again_is_dead_lettered_and_the_batch_finished(app: Insights) -> None:
    _, raw = events()
    batch = app.dispatch_events(raw, [COUNT])
    for _ in range(MAX_REDRIVES):
        take(app, "events")
        assert look(app).handlers == {batch: [COUNT]}
    take(app, "events")
    assert look(app).given_up == {batch: [COUNT]}
    record = app.store.get(batch)
    assert record is not None and record["state"] == "done" and record["failed"] == [COUNT]
    [letter] = app.dead_letters.list()
    assert letter["handler"] == COUNT and len(letter["events"]) == len(raw) and "LostTask" in letter["error"]
    assert not look(app)


def test_a_broker_that_is_not_redis_is_left_alone(app: Insights) -> None:
    amqp = create_insights(dataclasses.replace(app.settings, broker_url="amqp://guest:guest@127.0.0.1:1//"))
    try:
        assert amqp.redriver().broker is None
        assert not amqp.redriver().run()
    finally:
        amqp.services.close()
