"""Broker parity: the event pipeline and the HTTP API with RabbitMQ as broker (Redis for results).

Runs when a RabbitMQ server is reachable (as on CI machines here); queue names are unique to
the test run and deleted afterwards, so a shared server is not disturbed.
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.queues import shard_queues
from config.settings import Queues, Settings
from tasks.app import Insights, create_insights
from tests.conftest import Pipeline, send
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
