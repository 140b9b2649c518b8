"""Broker parity: the event pipeline and the HTTP API with RabbitMQ as broker (Redis for results).

Runs when a RabbitMQ server is reachable (as on CI machines here); queue names are unique to
the test run and deleted afterwards, so a shared server is not disturbed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.queues import shard_queues
from config.settings import Queues, Settings
from tasks.app import Insights, create_insights
from tests.conftest import COMMANDS, Pipeline, send, start_process, stop_process, wait_for
from tests.tasks.test_shard_leases import USERS, answering, handled, shard_worker, wait_done
from web.app import create_app

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not rabbitmq_reachable(), reason="no RabbitMQ server on 127.0.0.1:5672"),
]


@pytest.fixture
def on_rabbitmq(settings: Settings, tmp_path: Path) -> Iterator[tuple[Insights, Pipeline]]:
    """A deployment whose broker is RabbitMQ, with queues of its own."""
    tag = uuid.uuid4().hex[:8]
    queues = Queues(*(f"{name}-{tag}" for name in ("views", "queries", "events", "reports", "batch")))
    assert settings.redis_url is not None
    own = dataclasses.replace(
        settings,
        # A Redis database of its own: the session's batcher must not take this deployment's intake.
        redis_url=settings.redis_url.rsplit("/", 1)[0] + "/7",
        broker_url=AMQP_URL,
        queues=queues,
        mongo_db_prefix=f"amqp{tag}_",
        data_dir=tmp_path / "data",
        fs_root=tmp_path / "data" / "files",
    )
    app = create_insights(own)
    pipeline = Pipeline(app, tmp_path).start()
    try:
        yield app, pipeline
    finally:
        pipeline.stop()
        with app.celery.connection_for_write() as connection, connection.channel() as channel:
            for queue in [*queues.all(), *shard_queues(queues, own.shards)]:
                channel.queue_delete(queue)
                channel.exchange_delete(queue)
        app.services.close()


def test_events_queries_and_ordered_shards_work_on_rabbitmq(on_rabbitmq: tuple[Insights, Pipeline]) -> None:
    app, _ = on_rabbitmq
    client = create_app(app).test_client()
    run = uuid.uuid4().hex
    events = [
        {"run": run, "n": n, "order_run": run, "username": f"u{n % 3}", "seq": n, "time": f"2026-11-01T00:{n:02d}"}
        for n in range(60)
    ]  # with a time: a re-sent event is the same event
    state = send(client, events)
    assert state["failed"] == [] and state["duplicates"] == 0
    assert send(client, events[:10])["duplicates"] == 10
    assert sorted(client.get(f"/query/delivered?run={run}").get_json().values()) == [1] * 60
    sequences = client.get(f"/query/sequences?run={run}").get_json()
    assert sequences == {f"u{k}": [n for n in range(60) if n % 3 == k] for k in range(3)}
    assert client.get("/view/djt_fake_user_count").text == "<html>Users: 2</html>"
    assert client.get("/health").get_json()["checks"]["broker"]["ok"]


@pytest.fixture
def vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of the test's own (rabbitmqctl), deleted afterwards."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: cannot make a virtual host of our own")
    name = f"insights-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True, capture_output=True
        )
        yield name
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True)


def test_two_shard_workers_on_rabbitmq_one_consumes_and_the_standby_takes_over(
    settings: Settings, vhost: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    assert settings.redis_url is not None
    own = dataclasses.replace(
        settings,
        broker_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        redis_prefix=f"sac{tag}:",
        module_packages=("tests.lease_modules",),
        shards=2,
        data_dir=tmp_path,
        fs_root=tmp_path / "files",
    )
    app = create_insights(own)
    kind = start_process(
        own, COMMANDS.worker(own.queues.all(), concurrency=1, name=f"kind-{tag}@%h"), tmp_path / "kind.log"
    )
    first = shard_worker(app, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: answering(app, first), what="the first shard worker to answer")
        second = shard_worker(app, tmp_path / "second.log")
        wait_for(lambda: answering(app, second), what="the second shard worker to answer")
        run = uuid.uuid4().hex
        batches = [app.dispatch_events([{"run": run, "username": u, "seq": seq} for u in USERS]) for seq in range(10)]
        wait_done(app, batches)
        handlings, violations, _ = handled(app, run)
        assert len({h["pid"] for h in handlings}) == 1 and violations == []  # one consumer per shard queue
        active = first if {h["pid"] for h in handlings} == {first.pid} else second
        standby = second if active is first else first

        batches = [
            app.dispatch_events([{"run": run, "username": u, "seq": seq, "pause": 0.05} for u in USERS])
            for seq in range(10, 30)
        ]
        wait_for(lambda: len(handled(app, run)[0]) >= 13 * len(USERS), what="part of the backlog")
        os.killpg(active.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: any(h["pid"] == standby.pid for h in handled(app, run)[0]),
            timeout=60,
            what="the standby to consume",
        )
        print(f"\nRabbitMQ takeover after SIGKILL: {time.monotonic() - killed:.2f} s to the standby's first event")
        wait_done(app, batches)
        handlings, violations, last = handled(app, run)
        assert violations == [] and last == dict.fromkeys(USERS, 29)
    finally:
        stop_process(*(p for p in (kind, first, second) if p is not None and p.poll() is None))
        app.services.close()
