"""The event log shared by every host: batchers on two "hosts" (apps with their own INSIGHTS_DATA_DIR)
log into MongoDB; either replays and prunes the whole log. Real Redis, real nx-27017, real batchers."""

from __future__ import annotations

import dataclasses
import json
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
from tasks.pipeline.batcher import Batcher
from tasks.pipeline.event_log import EventLog
from tasks.pipeline.event_logs import open_event_log
from tasks.pipeline.mongo_log import MongoEventLog
from tasks.pipeline.replay import EventLogSource, read_event_log, replay_main
from tasks.pipeline.stream import Intake
from tasks.schedule import prune_event_log_now
from tasks.storage.mongo import event_log_database

DAY = 86400.0


@pytest.fixture
def two_hosts(settings: Settings, tmp_path: Path) -> Iterator[tuple[Insights, Insights]]:
    """Two apps of one deployment (Redis prefix, queues, MongoDB prefix: the test's own, no worker reads
    its queues) on two "hosts": each its own INSIGHTS_DATA_DIR."""
    tag = uuid.uuid4().hex[:8]
    queues = Queues(*(f"{name}-{tag}" for name in ("views", "queries", "events", "reports", "batch")))
    shared = dataclasses.replace(settings, redis_prefix=f"hosts{tag}:", queues=queues, mongo_db_prefix=f"hosts{tag}_")
    apps = tuple(
        create_insights(dataclasses.replace(shared, data_dir=tmp_path / host, fs_root=tmp_path / host / "files"))
        for host in ("host-a", "host-b")
    )
    yield apps[0], apps[1]
    client = apps[0].services.redis
    for key in client.scan_iter(f"{shared.redis_prefix}*"):
        client.delete(key)
    client.delete(*queues.all(), *shard_queues(queues, shared.shards))
    apps[0].services.mongo.drop_database(event_log_database(shared.mongo_db_prefix))
    for app in apps:
        app.services.close()


def batch_through(app: Insights, consumer: str, events: list[dict[str, Any]], sender: str | None = None) -> str:
    """Submit ``events`` and let a batcher of ``app`` dispatch (and log) them; returns the receipt."""
    receipt = app.intake.submit(events, sender=sender)
    batcher = Batcher(app, consumer=consumer)
    batcher.ensure_group()
    try:
        batcher.step(max_block=0.5)
        batcher.flush(whole=True)
    finally:
        batcher.close()
    assert app.intake.backlog() == 0 and app.store.receipt(receipt)["batches"]
    return receipt


def test_what_one_host_logged_the_other_replays_and_either_prunes_for_both(
    two_hosts: tuple[Insights, Insights], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_hosts
    batch_through(a, "batcher-on-a", [{"n": n, "host": "a"} for n in range(3)])
    batch_through(b, "batcher-on-b", [{"n": n, "host": "b"} for n in range(3, 5)], sender="lms")
    batch_through(a, "batcher-on-a", [{"n": 5, "host": "a"}])
    assert not a.settings.event_log_dir.exists() and not b.settings.event_log_dir.exists()

    for app in (b, a):  # from either host: every event, in receive order, with its id and sender
        items = list(read_event_log(open_event_log(app.settings, app.services.mongo)))
        assert [item[1]["n"] for item in items] == list(range(6))
        assert [item[2].sender for item in items] == [None, None, None, "lms", "lms", None]  # type: ignore[misc]
        assert all(item[2].id for item in items)  # type: ignore[misc]

    # The command line on host b replays all of it (into a stream of the test's own).
    stream = f"replayed-{uuid.uuid4().hex}"
    intake = Intake(b.services.redis, stream, f"{stream}:unreadable")
    try:
        argv = ["--log", "--no-progress", "--wait", "0", "--checkpoint", str(tmp_path / "cp")]  # no batcher reads it
        assert replay_main(argv, b.settings, stream=stream) == 0
        replayed = [e for _, f in b.services.redis.xrange(stream) for e in json.loads(f[b"events"])]
        assert [event["n"] for event in replayed] == list(range(6))
        assert "replayed 6 events" in capsys.readouterr().out
    finally:
        b.services.redis.delete(intake.stream)

    # Retention from host a deletes host b's batches too; run again (or from b), nothing is left to do.
    assert prune_event_log_now(a) == 0  # nothing older than 30 days
    assert prune_event_log_now(a, now=time.time() + 31 * DAY) == 3
    assert prune_event_log_now(b, now=time.time() + 31 * DAY) == 0
    assert list(open_event_log(b.settings, b.services.mongo).read()) == []


def test_the_local_log_keeps_each_hosts_batches_on_that_host(two_hosts: tuple[Insights, Insights]) -> None:
    a, b = (create_insights(dataclasses.replace(app.settings, event_log="local")) for app in two_hosts)
    try:
        batch_through(a, "batcher-on-a", [{"n": 0}])
        batch_through(b, "batcher-on-b", [{"n": 1}])
        for app, n in ((a, 0), (b, 1)):
            log = open_event_log(app.settings)
            assert isinstance(log, EventLog) and log.directory == app.settings.event_log_dir
            assert [record["event"]["n"] for _, record in log.read()] == [n]  # its own only
    finally:
        a.services.close()
        b.services.close()


def test_the_log_of_a_deployment_is_its_own(settings: Settings) -> None:
    """Deployments sharing a MongoDB (each its MONGO_DB_PREFIX) never read each other's log,
    and a replay checkpoint names the log it belongs to."""
    ours = open_event_log(dataclasses.replace(settings, mongo_db_prefix="ours_"))
    theirs = open_event_log(dataclasses.replace(settings, mongo_db_prefix="theirs_"))
    try:
        assert isinstance(ours, MongoEventLog) and isinstance(theirs, MongoEventLog)
        assert ours.database.name == "ours_-eventlog" != theirs.database.name
        assert EventLogSource(ours).description != EventLogSource(theirs).description
        assert "mongodb" not in ours.description.split(":", 2)[2]  # no URL (credentials) in a checkpoint
    finally:
        ours.close()
        theirs.close()


@pytest.mark.slow  # waits out the MongoDB client's 10 s server selection
def test_a_batcher_that_cannot_reach_mongodb_keeps_the_events_for_later(
    two_hosts: tuple[Insights, Insights],
) -> None:
    a, _ = two_hosts
    unreachable = dataclasses.replace(a.settings, mongo_url="mongodb://127.0.0.1:9")
    app = create_insights(unreachable)
    try:
        receipt = app.intake.submit([{"n": "kept"}])
        batcher = Batcher(app, consumer="no-mongo")
        batcher.ensure_group()
        batcher.step(max_block=0.5)  # reads the entry
        with pytest.raises(pymongo.errors.PyMongoError):
            batcher.flush(whole=True)  # dispatched while the log was written, which failed
        assert app.store.receipt(receipt)["state"] == "queued"  # not acknowledged without its log entry
        assert app.intake.backlog() == 1  # still in the intake stream: read and dispatched again later
        assert not batcher.log_in_background  # meanwhile a batch is logged before it is dispatched
    finally:
        batcher.close()
        app.services.close()
    rescuer = Batcher(a, consumer="rescuer", claim_idle=0.0)  # a batcher that reaches MongoDB takes it over
    rescuer.ensure_group()
    try:
        assert rescuer.recover() == 1
    finally:
        rescuer.close()
    assert [record["event"]["n"] for _, record in open_event_log(a.settings, a.services.mongo).read()] == ["kept"]
    assert a.store.receipt(receipt)["batches"]


def test_replay_of_a_time_range_of_the_shared_log(
    two_hosts: tuple[Insights, Insights], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_hosts
    log = open_event_log(a.settings, a.services.mongo)
    day = 1_793_404_800.0  # 2026-10-31T00:00:00Z
    log.append([(f"id-{n}", day + n * 3600, {"hour": n}) for n in range(0, 48, 6)], batch="from-a")
    stream = f"replayed-{uuid.uuid4().hex}"
    argv = ["--log", "--no-progress", "--wait", "0", "--checkpoint", str(tmp_path / "cp")]  # no batcher reads it
    argv += ["--since", "2026-10-31T06:00:00"]
    try:
        assert replay_main([*argv, "--until", str(day + 18 * 3600)], b.settings, stream=stream) == 0
        replayed = [e for _, f in b.services.redis.xrange(stream) for e in json.loads(f[b"events"])]
        assert [event["hour"] for event in replayed] == [6, 12, 18]
    finally:
        b.services.redis.delete(stream)
    assert replay_main(["x.log", "--since", "0"], b.settings) == 2
    assert replay_main(["--log", "--until", "yesterday"], b.settings) == 2
    assert "not a time: 'yesterday'" in capsys.readouterr().err
