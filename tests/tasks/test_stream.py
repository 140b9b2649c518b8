"""The intake stream protocol (tasks/pipeline/stream.py) on its own, against the tests' real Redis:
append, read through the consumer group, take back, take over, acknowledge, set aside, age."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tasks.app import Insights
from tasks.ops.embedded import EmbeddedRedis
from tasks.pipeline.batcher import Batcher
from tasks.pipeline.stream import GROUP, Intake, entry_time
from tasks.storage.keys import Keys


@pytest.fixture
def intake(redis_server: EmbeddedRedis) -> Iterator[Intake]:
    client = redis.Redis.from_url(redis_server.url)
    keys = Keys(f"stream-test-{uuid.uuid4().hex[:8]}:")
    yield Intake(client, keys.intake_stream, keys.intake_unreadable)
    client.delete(keys.intake_stream, keys.intake_unreadable)
    client.close()


def events_of(fields: dict[bytes, bytes]) -> list[dict[str, object]]:
    return list(json.loads(fields[b"events"]))


def test_an_entry_is_read_once_by_the_group_and_gone_once_acknowledged(intake: Intake) -> None:
    intake.join("a")
    intake.join("b")
    receipt = intake.submit([{"n": 1}, {"n": 2}], targets=["handler.x"], sender="ada")
    assert intake.queued(receipt) == (True, "ada")
    [(entry_id, fields)] = intake.read("a", block=0.1)
    assert entry_id == receipt
    assert events_of(fields) == [{"n": 1}, {"n": 2}] and fields[b"targets"] == b"handler.x"
    assert intake.read("b", block=0.01) == []  # the group delivers each entry to one batcher
    assert intake.backlog() == 1  # read, not yet acknowledged: still held
    intake.ack([entry_id])
    assert intake.backlog() == 0
    assert intake.queued(receipt) == (False, None)
    assert intake.read_own("a") == []


def test_a_batcher_takes_back_what_it_read_and_another_takes_over_once_it_is_idle(intake: Intake) -> None:
    intake.join("dead")
    intake.join("live")
    first, second = intake.submit([{"n": 1}]), intake.submit([{"n": 2}])
    assert [entry_id for entry_id, _ in intake.read("dead", block=0.1)] == [first, second]
    assert [entry_id for entry_id, _ in intake.read_own("dead")] == [first, second]
    assert list(intake.claim("live", min_idle=60)) == []  # not idle long enough
    time.sleep(0.6)
    intake.keep("dead", [first])  # still being dispatched: not abandoned
    taken = list(intake.claim("live", min_idle=0.4))
    assert [entry_id for entry_id, _ in taken] == [second]
    assert events_of(taken[0][1]) == [{"n": 2}]
    assert [entry_id for entry_id, _ in intake.read_own("live")] == [second]


def test_an_unreadable_entry_is_set_aside_with_its_error(intake: Intake) -> None:
    intake.join("a")
    client = intake._client
    bad = client.xadd(intake.stream, {"events": "[{not json", "n": 1, "targets": ""}).decode()
    [(entry_id, fields)] = intake.read("a", block=0.1)
    intake.set_aside(entry_id, fields, "ValueError('x')" * 100)
    assert intake.backlog() == 0 and intake.read_own("a") == []
    [(_, kept)] = client.xrange(intake.unreadable)
    assert kept[b"entry"] == bad.encode() and kept[b"events"] == b"[{not json"
    assert kept[b"error"].startswith(b"ValueError('x')") and len(kept[b"error"]) == 500
    assert client.xpending(intake.stream, GROUP)["pending"] == 0


def test_the_oldest_entry_has_an_age_from_its_id(intake: Intake) -> None:
    assert intake.oldest_age() is None
    receipt = intake.submit([{"n": 1}])
    intake.submit([{"n": 2}])
    assert entry_time(receipt) == pytest.approx(time.time(), abs=5)
    assert intake.oldest_age(now=entry_time(receipt) + 2.5) == pytest.approx(2.5)
    assert intake.oldest_age(now=entry_time(receipt) - 1) == 0.0  # a clock behind Redis: never negative


def test_a_batcher_takes_over_the_entries_of_a_dead_one_and_dispatches_them(unattended: Insights) -> None:
    intake = unattended.intake
    intake.join("dead")
    receipt = intake.submit([{"run": "takeover", "n": n} for n in range(3)])
    assert [entry_id for entry_id, _ in intake.read("dead", block=0.1)] == [receipt]  # then it died
    batcher = Batcher(unattended, consumer="live", claim_idle=0.2)
    batcher.ensure_group()
    assert batcher.recover() == 0  # not idle long enough yet
    time.sleep(0.3)
    assert batcher.recover() == 1
    batcher.close()
    assert intake.backlog() == 0 and intake.read_own("dead") == intake.read_own("live") == []
    state = unattended.store.receipt(receipt)
    assert state["state"] == "pending" and state["events"] == 3 and len(state["batches"]) == 1  # no worker here
