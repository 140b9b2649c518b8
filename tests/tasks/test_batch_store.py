"""Batch records in Redis (tasks/pipeline/batch_store.py): what lives how long, before and after a batch finishes."""

from __future__ import annotations

import json
import uuid

import redis

from config.settings import Settings
from tasks.ops.embedded import EmbeddedRedis
from tasks.pipeline.batch_store import DONE, BatchStore
from tasks.storage.keys import Keys

PENDING_TTL, DONE_TTL = 7 * 24 * 3600, 24 * 3600


def test_a_finished_batch_keeps_its_record_receipts_and_outcomes_for_the_shorter_ttl(
    redis_server: EmbeddedRedis,
) -> None:
    client, keys = redis.Redis.from_url(redis_server.url), Keys(f"t{uuid.uuid4().hex[:8]}:")
    store = BatchStore(client, PENDING_TTL, keys, DONE_TTL)
    batch, receipts, labels = uuid.uuid4().hex, ["1-0", "2-0"], ["handler.m.a", "handler.m.b"]
    store.put_events(batch, [["e1", 1.0, {"n": 1}]])
    tasks = {label: {"id": label, "task": label, "indices": None, "queue": "events"} for label in labels}
    store.start(batch, 1, tasks, receipts)
    store.link_receipts({receipt: {"batches": [batch]} for receipt in receipts})
    for label in labels:  # what handler tasks keep (tasks/pipeline/handling.py)
        client.set(keys.done(batch, label), json.dumps({"handler": label, "ok": True}), ex=PENDING_TTL)
    pending = [keys.batch(batch), keys.batch_events(batch), *map(keys.receipt, receipts)]
    assert all(PENDING_TTL - 5 < client.ttl(key) <= PENDING_TTL for key in pending)  # while handlers may not have run

    store.finish(batch, [{"handler": label, "ok": True} for label in labels])

    assert store.get(batch)["state"] == DONE and store.receipt(receipts[0])["state"] == DONE
    assert client.exists(keys.batch_events(batch)) == 0  # the events go as soon as the batch is finished
    kept = [keys.batch(batch), *map(keys.receipt, receipts), *(keys.done(batch, label) for label in labels)]
    assert all(DONE_TTL - 5 < client.ttl(key) <= DONE_TTL for key in kept), [client.ttl(key) for key in kept]


def test_a_finished_batch_outlives_a_broker_redelivery_and_never_the_pending_ttl() -> None:
    assert Settings(batch_done_ttl=60, visibility_timeout=3600).finished_batch_ttl == 3600
    assert Settings(batch_done_ttl=10**9, batch_record_ttl=7200).finished_batch_ttl == 7200
    assert Settings().finished_batch_ttl == 24 * 3600
