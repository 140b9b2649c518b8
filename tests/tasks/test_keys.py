"""Redis key names (tasks/storage/keys.py): spelled in one place, all under ``INSIGHTS_REDIS_PREFIX``,
so that two deployments share one Redis without seeing each other's events."""

from __future__ import annotations

import dataclasses
import inspect
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from config.queues import shard_queues
from config.settings import ROOT, Queues, Settings
from tasks.app import Insights, create_insights
from tasks.core.memo import MemoPolicy
from tasks.storage.keys import DEFAULT_PREFIX, Keys
from tests.conftest import Pipeline, send
from web.app import create_app

KEYS_MODULE = ROOT / "tasks" / "storage" / "keys.py"
LITERAL = re.compile(r"""["']insights:""")  # a key spelled out: "insights:...", f"insights:...", 'insights:...'


def every_key(keys: Keys) -> dict[str, str]:
    """Every key family of ``keys`` by member name, parameterized ones with sample arguments."""
    found = {}
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name == "prefix":
            continue
        if isinstance(member, property):
            found[name] = getattr(keys, name)
        elif name in ("memo_lock", "memo_done"):
            found[name] = getattr(keys, name)(keys.memo("m", "q", "digest"))
        else:
            arguments = list(inspect.signature(member).parameters)[1:]  # after self
            found[name] = getattr(keys, name)(*(f"<{argument}>" for argument in arguments))
    return found


def test_no_redis_key_is_spelled_outside_the_keys_module() -> None:
    spelled = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for top in ("tasks", "web")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path != KEYS_MODULE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LITERAL.search(line)
    ]
    assert not spelled, "Redis keys belong in tasks/storage/keys.py:\n" + "\n".join(spelled)


def test_every_key_family_starts_with_the_prefix_and_each_is_its_own() -> None:
    keys = every_key(Keys("lms2:"))
    assert len(keys) >= 20
    assert [name for name, key in keys.items() if not key.startswith("lms2:")] == []
    assert len(set(keys.values())) == len(keys)  # no two families share a key
    default = every_key(Keys())
    assert all(key.startswith(DEFAULT_PREFIX) for key in default.values())
    assert not set(default.values()) & set(keys.values())


def test_every_family_says_what_it_holds_and_how_long_it_lives() -> None:
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name == "prefix":
            continue
        doc = inspect.getdoc(member) or ""
        assert "TTL" in doc or "channel" in doc or "RedBeat" in doc, f"Keys.{name} says nothing of its lifetime"


def test_the_prefix_is_a_setting() -> None:
    assert Settings().redis_prefix == Settings.from_env({}).redis_prefix == DEFAULT_PREFIX
    settings = Settings.from_env({"INSIGHTS_REDIS_PREFIX": "lms2:"})
    assert settings.redis_prefix == "lms2:"
    assert Settings.from_env(settings.to_env()) == settings


def test_the_stores_of_an_app_build_every_key_under_its_prefix(settings: Settings) -> None:
    prefix = f"keys{uuid.uuid4().hex[:8]}:"
    app = create_insights(dataclasses.replace(settings, redis_prefix=prefix))
    try:
        assert app.keys == app.services.keys == Keys(prefix)
        assert app.intake.stream == f"{prefix}intake" and app.intake.unreadable.startswith(prefix)
        assert app.celery.conf.redbeat_key_prefix == f"{prefix}beat"
        assert app.memo.key("m", "q", {}, MemoPolicy(cache_time=60, timeout=60)).startswith(f"{prefix}memo:m:q:")
        cache = app.services.cache("grades")
        cache.set("k", 1)
        app.services.fs("grades").expire("report.csv", 60)
        app.runs.record(uuid.uuid4().hex, "query", "q", "addr:test", None)
        app.dead_letters.add("handler.x", [["id", 0.0, {}]], "Error", "", "batch")
        made = [key.decode() for key in app.services.redis.scan_iter(f"{prefix}*")]
        assert {f"{prefix}cache:grades:k", f"{prefix}fs:expiry:grades", f"{prefix}deadletters"} <= set(made)
        assert any(key.startswith(f"{prefix}run:") for key in made)
    finally:
        for key in app.services.redis.scan_iter(f"{prefix}*"):
            app.services.redis.delete(key)
        app.services.close()


# Two deployments on one Redis -------------------------------------------------------------------
@pytest.fixture
def neighbour(settings: Settings, tmp_path: Path) -> Iterator[Insights]:
    """A second deployment on the session's Redis database, told apart only by its key prefix and
    its queues, with processes of its own (batcher and workers)."""
    tag = uuid.uuid4().hex[:8]
    queues = Queues(*(f"{name}-{tag}" for name in ("views", "queries", "events", "reports", "batch")))
    own = dataclasses.replace(
        settings,
        redis_prefix=f"neighbour{tag}:",
        queues=queues,
        mongo_db_prefix=f"neighbour{tag}_",
        data_dir=tmp_path / "data",
        fs_root=tmp_path / "data" / "files",
        # A module pinned to a literal queue ("reports") would share it with the session's deployment.
        exclude_modules=("original",),
    )
    app = create_insights(own)
    pipeline = Pipeline(app, tmp_path).start()
    try:
        yield app
    finally:
        pipeline.stop()
        client = app.services.redis
        for key in client.scan_iter(f"{own.redis_prefix}*"):
            client.delete(key)
        client.delete(*queues.all(), *shard_queues(queues, own.shards))
        app.services.close()


def test_two_deployments_share_one_redis_each_with_its_own_events(
    neighbour: Insights, client: FlaskClient, insights: Insights
) -> None:
    run = uuid.uuid4().hex
    theirs = create_app(neighbour).test_client()
    state = send(theirs, [{"run": run, "n": n} for n in range(20)])
    ours = send(client, [{"run": run, "n": n} for n in range(5)])
    assert state["failed"] == [] and ours["failed"] == []
    # Each deployment's handlers got its own events (a deployment's modules have databases of their own).
    assert sorted(theirs.get("/query/delivered", query_string={"run": run}).get_json().values()) == [1] * 20
    assert sorted(client.get("/query/delivered", query_string={"run": run}).get_json().values()) == [1] * 5
    # Its receipt and batches are under its prefix only, and the other deployment knows none of them.
    redis = neighbour.services.redis
    assert redis.exists(neighbour.keys.receipt(state["receipt"]))
    assert not redis.exists(insights.keys.receipt(state["receipt"]))
    assert insights.store.receipt(state["receipt"])["state"] == "queued"  # unknown there
    for batch in state["batches"]:
        assert redis.exists(neighbour.keys.batch(batch)) and not redis.exists(insights.keys.batch(batch))
    marks = [state["receipt"], *state["batches"]]
    found = [key.decode() for key in redis.scan_iter() if any(mark.encode() in key for mark in marks)]
    assert found and all(key.startswith(neighbour.keys.prefix) for key in found), found
