"""A module's cache namespace in the tests' real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from tasks.errors import ReadOnlyError
from tasks.ops.embedded import EmbeddedRedis
from tasks.storage.cache import Cache, ReadOnlyCache
from tasks.storage.keys import Keys
from tests.conftest import wait_for


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def new_cache(client: redis.Redis) -> Cache:
    return Cache(client, f"module_{uuid.uuid4().hex}", Keys())


@pytest.fixture
def cache(redis_client: redis.Redis) -> Cache:
    return new_cache(redis_client)


def test_a_missing_key_gives_the_default(cache: Cache) -> None:
    assert cache.get("missing") is None
    assert cache.get("missing", "default") == "default"


def test_dicts_and_lists_round_trip(cache: Cache) -> None:
    value = {"grades": [1, 2.5, None], "user": {"name": "ada", "active": True}}
    cache.set("summary", value)
    cache.set("names", ["ada", "bob"])

    assert cache.get("summary") == value
    assert cache.get("names") == ["ada", "bob"]


def test_a_stored_falsy_value_is_not_the_default(cache: Cache) -> None:
    cache.set("zero", 0)
    cache.set("empty", [])

    assert cache.get("zero", "default") == 0
    assert cache.get("empty", "default") == []


def test_a_numpy_array_round_trips(cache: Cache) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4) / 7

    cache.set("matrix", array)
    result = cache.get("matrix")

    assert isinstance(result, np.ndarray)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, array)


def test_setting_a_key_again_replaces_the_value(cache: Cache) -> None:
    cache.set("k", 1)
    cache.set("k", 2)

    assert cache.get("k") == 2


def test_a_value_expires_after_its_timeout(cache: Cache) -> None:
    cache.set("short", "value", timeout=0.2)
    cache.set("long", "value", timeout=3600)
    cache.set("forever", "value")

    wait_for(lambda: cache.get("short", "gone") == "gone", timeout=5, what="the cached value to expire")
    assert cache.get("long") == "value"
    assert cache.get("forever") == "value"


def test_modules_have_separate_namespaces(redis_client: redis.Redis) -> None:
    grading, forum = new_cache(redis_client), new_cache(redis_client)
    grading.set("key", "grading's")

    assert forum.get("key") is None
    forum.set("key", "forum's")
    assert grading.get("key") == "grading's"
    forum.delete("key")
    assert grading.get("key") == "grading's"


def test_delete_forgets_a_key(cache: Cache) -> None:
    cache.set("k", "v")
    cache.delete("k")
    cache.delete("never-set")

    assert cache.get("k", "default") == "default"


def test_a_read_only_cache_reads_and_refuses_writes_naming_the_module(cache: Cache) -> None:
    cache.set("seen", {"user": "ada"})
    replica = ReadOnlyCache(cache, "grades")

    assert replica.get("seen") == {"user": "ada"}
    assert replica.get("missing", 0) == 0
    with pytest.raises(ReadOnlyError, match=r"set\('seen'\) refused: .*read-only view of the cache of module 'grades'"):
        replica.set("seen", "overwritten")
    with pytest.raises(ReadOnlyError, match=r"delete\('seen'\) refused"):
        replica.delete("seen")
    assert cache.get("seen") == {"user": "ada"}
