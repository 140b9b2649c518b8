"""Dedupe records in time buckets: the window across bucket boundaries, expiry, conflicts, and memory.

The claims run on a real Redis; a test that steps through buckets gives the deduper a clock of
its own (Redis' clock otherwise), near the real time so that the keys' TTLs stay sensible.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tasks.authoring.event_ids import canonical_json, fingerprint
from tasks.ops.embedded import EmbeddedRedis
from tasks.pipeline.dedupe import (
    GROWTH,
    LEGACY_HORIZON,
    MIN_SHARDS,
    SHARD_BYTES,
    SPLIT_AT,
    Claim,
    Deduper,
    bucket_seconds,
    id_digest,
)
from tasks.pipeline.dedupe import fingerprint as handler_token
from tasks.storage.keys import Keys

WINDOW = 3600
SPAN = bucket_seconds(WINDOW)
HANDLERS = ["handler.m.a", "handler.m.b", "handler.m.c", "handler.m.d"]
# What a 10,000 events/s deployment can keep in 64 GB of Redis with a one-day window, records
# living up to 1 + 1/BUCKETS windows: 64 GB / (10,000 * 86,400 * 1.25) = 59 bytes per event.
# The layout keeps about 25-30 (the per-key layout before it, about 200).
MAX_BYTES_PER_EVENT = 59


class Clock:
    """A settable clock, starting at the beginning of a bucket of ``span`` seconds after the real time."""

    def __init__(self, span: int = SPAN) -> None:
        self.now = (int(time.time()) // span + 1) * span + 0.5

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> Keys:
    """Keys under a prefix of the test's own, so that counts and sizes are this test's alone."""
    return Keys(f"t{uuid.uuid4().hex[:8]}:")


def prints_of(*values: object) -> list[str]:
    """The fingerprints of events ``{"v": value}``."""
    return [fingerprint(canonical_json({"v": value})) for value in values]


def buckets(client: redis.Redis, keys: Keys) -> set[str]:
    """The time buckets that hold records (in shard keys ``<bucket>:<shards>:<shard>``)."""
    found = client.scan_iter(f"{keys.dedupe_prefix}[0-9]*:*:*")
    return {key.decode()[len(keys.dedupe_prefix) :].split(":")[0] for key in found}


def test_an_id_seen_in_the_previous_bucket_is_still_a_duplicate(redis_server: EmbeddedRedis, keys: Keys) -> None:
    client, clock = redis.Redis.from_url(redis_server.url), Clock()
    deduper = Deduper(client, WINDOW, keys, clock=clock)
    ids, prints = [f"e-{uuid.uuid4().hex}" for _ in range(3)], prints_of(1, 2, 3)
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(tuple(HANDLERS))] * 3
    clock.now += SPAN  # the next bucket
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(())] * 3
    clock.now += WINDOW - SPAN - 1  # just inside the window: BUCKETS buckets later
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(())] * 3
    assert len(buckets(client, keys)) == 1  # nothing written after the first claim


def test_a_conflict_and_new_handlers_are_told_apart_in_an_older_bucket(redis_server: EmbeddedRedis, keys: Keys) -> None:
    client, clock = redis.Redis.from_url(redis_server.url), Clock()
    deduper = Deduper(client, WINDOW, keys, clock=clock)
    ids, prints = [f"e-{uuid.uuid4().hex}" for _ in range(2)], prints_of(1, 2)
    assert deduper.claim(ids, prints, HANDLERS[:2]) == [Claim(tuple(HANDLERS[:2]))] * 2
    clock.now += 3 * SPAN
    changed = [prints[0], *prints_of("changed")]
    assert deduper.claim(ids, changed, HANDLERS[:3]) == [Claim((HANDLERS[2],)), Claim((), known=prints[1])]
    clock.now += SPAN
    assert deduper.claim(ids, prints, HANDLERS[:3]) == [Claim(()), Claim((HANDLERS[2],))]
    assert deduper.claim(ids, changed, HANDLERS) == [Claim((HANDLERS[3],)), Claim((), known=prints[1])]


def test_an_id_is_new_again_once_the_window_and_its_bucket_are_over(redis_server: EmbeddedRedis, keys: Keys) -> None:
    client, clock = redis.Redis.from_url(redis_server.url), Clock()
    deduper = Deduper(client, WINDOW, keys, clock=clock)
    ids, prints = [f"e-{uuid.uuid4().hex}"], prints_of(1)
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(tuple(HANDLERS))]
    clock.now += WINDOW + SPAN
    assert deduper.claim(ids, prints_of("another event now"), HANDLERS) == [Claim(tuple(HANDLERS))]  # no conflict


def test_a_buckets_keys_expire_as_a_whole_after_the_window(redis_server: EmbeddedRedis, keys: Keys) -> None:
    client = redis.Redis.from_url(redis_server.url)
    deduper = Deduper(client, WINDOW, keys)  # Redis' clock
    ids = [f"e-{uuid.uuid4().hex}" for _ in range(50)]
    deduper.claim(ids, prints_of(*range(50)), HANDLERS)
    kept = {keys.dedupe_handler_sets.encode(), keys.dedupe_legacy_until.encode()}
    written = [key for key in client.scan_iter(f"{keys.dedupe_prefix}*") if key not in kept]
    bucket = int(client.time()[0]) // SPAN
    picks = {int.from_bytes(id_digest(i)[:SHARD_BYTES], "big") % MIN_SHARDS for i in ids}
    spelled = {keys.dedupe_bucket(bucket), *(keys.dedupe_shard(bucket, MIN_SHARDS, pick) for pick in picks)}
    assert {key.decode() for key in written} == spelled  # the script spells its keys as Keys does
    assert len(written) > 2
    ttls = {client.ttl(key) for key in written}
    assert all(WINDOW < ttl <= WINDOW + SPAN + 2 for ttl in ttls), ttls
    assert len(ttls) <= 2  # one expiry for the whole bucket (give or take the second that passed)
    assert client.ttl(keys.dedupe_handler_sets) == -1  # a few bytes per set of handlers, kept
    assert client.ttl(keys.dedupe_legacy_until) == -1  # a few bytes: when reading the per-id layout stops


def test_ids_are_remembered_for_a_real_window_and_then_forgotten(redis_server: EmbeddedRedis, keys: Keys) -> None:
    client = redis.Redis.from_url(redis_server.url)
    deduper = Deduper(client, 2, keys)  # 2 s, Redis' clock: 1 s buckets
    ids, prints = [f"e-{uuid.uuid4().hex}"], prints_of(1)
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(tuple(HANDLERS))]
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(())]
    deadline = time.monotonic() + 30
    while any(True for _ in client.scan_iter(f"{keys.dedupe_prefix}[0-9]*")):  # every bucket key expired
        assert time.monotonic() < deadline, "dedupe keys outlived their window by far"
        time.sleep(0.2)
    assert deduper.claim(ids, prints, HANDLERS) == [Claim(tuple(HANDLERS))]


@pytest.fixture(scope="module")
def quiet_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """A Redis of this module's own: nothing else writes to it, so ``used_memory`` is ours alone."""
    with EmbeddedRedis(tmp_path_factory.mktemp("quiet-redis"), persist=False) as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


def test_a_dedupe_record_keeps_few_bytes_of_redis_memory(quiet_redis: redis.Redis) -> None:
    keys, window = Keys(), 24 * 3600
    clock = Clock(bucket_seconds(window))
    deduper = Deduper(quiet_redis, window, keys, clock=clock)
    deduper.claim(["warm-up"], prints_of("warm-up"), HANDLERS)  # the script loaded, the handler set numbered
    events = MIN_SHARDS * SPLIT_AT + 20_000  # enough for the bucket to add a level of shards
    ids = [f"~@lms:{uuid.uuid4()}" for _ in range(events)]  # xAPI statement ids of a named sender
    prints = prints_of(*range(events))
    before = quiet_redis.info("memory")["used_memory"]
    for start in range(0, events, 500):
        claims = deduper.claim(ids[start : start + 500], prints[start : start + 500], HANDLERS)
        assert claims == [Claim(tuple(HANDLERS))] * len(claims)
    used = (quiet_redis.info("memory")["used_memory"] - before) / events
    print(f"dedupe: {used:.1f} bytes of Redis used_memory per event ({events:,} events, 4 handlers)")
    assert used < MAX_BYTES_PER_EVENT
    levels = quiet_redis.hget(keys.dedupe_bucket(int(clock.now) // bucket_seconds(window)), "levels")
    assert levels == f"{MIN_SHARDS},{MIN_SHARDS * GROWTH}".encode()  # the bucket grew a level ...
    clock.now += bucket_seconds(window)
    for start in range(0, events, 500):  # ... and every id is found again, in either level, a bucket later
        chunk = ids[start : start + 500]
        assert deduper.claim(chunk, prints[start : start + 500], HANDLERS) == [Claim(())] * len(chunk)


def test_records_of_the_per_id_layout_are_read_until_the_legacy_horizon_only(
    redis_server: EmbeddedRedis, keys: Keys
) -> None:
    client, clock = redis.Redis.from_url(redis_server.url), Clock()
    deduper = Deduper(client, WINDOW, keys, clock=clock)
    early, late = f"old-{uuid.uuid4().hex}", f"old-{uuid.uuid4().hex}"
    for old in (early, late):  # one key per id, as the per-id layout wrote them
        client.set(keys.seen(old), prints_of(old)[0] + handler_token(HANDLERS[0]), ex=30 * 24 * 3600)
    assert deduper.claim([early], prints_of(early), HANDLERS[:1]) == [Claim(())]  # read: a duplicate
    assert deduper.claim([early], prints_of("changed"), HANDLERS[:1]) == [Claim((), known=prints_of(early)[0])]
    horizon_end = int(client.get(keys.dedupe_legacy_until) or 0)
    assert horizon_end == math.ceil(clock.now + LEGACY_HORIZON)  # set by the first claim, kept
    clock.now = horizon_end + 1
    assert deduper.claim([late], prints_of("another"), HANDLERS[:1]) == [Claim((HANDLERS[0],))]  # no longer read
    assert int(client.get(keys.dedupe_legacy_until) or 0) == horizon_end
    assert not deduper._legacy  # and their keys are no longer passed
    assert deduper.claim([late], prints_of("another"), HANDLERS[:1]) == [Claim(())]  # the new record is


def test_a_changed_window_is_said_out_loud(
    redis_server: EmbeddedRedis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert Deduper(client, WINDOW, keys).note_window() is None  # the first: nothing to compare
    assert Deduper(client, WINDOW, keys).note_window() is None  # the same window again
    with caplog.at_level("WARNING", logger="tasks.pipeline.dedupe"):
        assert Deduper(client, 2 * WINDOW, keys).note_window() == WINDOW
    assert "INSIGHTS_DEDUPE_WINDOW changed from 3600 to 7200 s" in caplog.text
