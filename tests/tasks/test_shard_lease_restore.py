"""What a worker taking a shard queue's lease puts back at the head of the queue
(``ShardLeases.restore_unacked``, tasks/pipeline/shard_leases.py), against kombu itself.

No worker runs here: the messages are published and taken (not acknowledged) through kombu's
Redis transport, as a shard worker takes them, on a key prefix of the test's own; kombu
restores and acknowledges them as the old holder would, while the new holder restores.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from config.queues import shard_queues
from tasks.app import Insights
from tasks.pipeline.shard_leases import ShardLeases


@pytest.fixture
def app(unattended: Insights) -> Iterator[Insights]:
    """A deployment no worker reads, whose broker keys (kombu's too) carry a prefix of its own."""
    options = dict(unattended.celery.conf.broker_transport_options or {})
    prefix = f"kombu{uuid.uuid4().hex[:8]}:"
    unattended.celery.conf.broker_transport_options = {**options, "global_keyprefix": prefix}
    yield unattended
    broker = unattended.services.redis
    for key in broker.scan_iter(f"{prefix}*"):
        broker.delete(key)


def queue_of(app: Insights) -> Queue:
    """The deployment's first shard queue, declared as config/queues.py does."""
    name = shard_queues(app.settings.queues, app.settings.shards)[0]
    return Queue(name, Exchange(name), routing_key=name)


def publish(connection: Connection, queue: Queue, numbers: range, priority: int = 0) -> None:
    """Send one message per number to ``queue`` through kombu."""
    producer = connection.Producer()
    for n in numbers:
        producer.publish({"n": n}, exchange=queue.exchange, routing_key=queue.routing_key, priority=priority,
                         declare=[queue])  # fmt: skip


def numbers_in(leases: ShardLeases, queue: str, priority: int = 0) -> list[int]:
    """The numbers of the messages waiting in one priority list of ``queue``."""
    raw = leases.broker.lrange(leases.layout.queue_key(queue, priority), 0, -1)
    return [json.loads(base64.b64decode(json.loads(r)["body"]))["n"] for r in raw]


def leases_of(app: Insights, queue: Queue) -> ShardLeases:
    broker = app.services.broker_redis
    assert broker is not None
    return ShardLeases(app.services.redis, broker, app, [queue.name])


def test_a_restored_message_goes_back_to_the_list_of_its_priority(app: Insights) -> None:
    queue = queue_of(app)
    leases = leases_of(app, queue)
    with Connection(app.settings.broker, transport_options=app.celery.conf.broker_transport_options) as connection:
        publish(connection, queue, range(1), priority=9)
        with connection.SimpleQueue(queue) as simple:
            simple.get(timeout=5)  # the old holder took it and died (its lease lapses)
            leases.beat()  # the lease was free: taken, what the old holder left goes back
            assert numbers_in(leases, queue.name, 9) == [0]
            assert numbers_in(leases, queue.name) == []
            assert not leases.broker.hlen(leases.layout.unacked)
    leases.stop()


def test_retaking_a_lease_this_worker_let_lapse_does_not_requeue_the_message_it_has_in_hand(app: Insights) -> None:
    queue = queue_of(app)
    leases = leases_of(app, queue)
    with Connection(app.settings.broker, transport_options=app.celery.conf.broker_transport_options) as connection:
        publish(connection, queue, range(1))
        leases.beat()
        assert leases.held() == {queue.name}
        with connection.SimpleQueue(queue) as simple:
            message = simple.get(timeout=5)  # this worker runs it
            leases.broker.delete(leases.leases[queue.name].key)  # its lease lapsed (a slow heartbeat)
            leases.beat()  # and it takes it again, nobody having held it meanwhile
            assert numbers_in(leases, queue.name) == []  # not queued a second time
            assert leases.broker.hexists(leases.layout.unacked, message.delivery_tag)
            message.ack()
    leases.stop()


def test_restoring_while_kombu_restores_and_acknowledges_neither_duplicates_nor_resurrects(app: Insights) -> None:
    queue, count = queue_of(app), 100
    leases = leases_of(app, queue)
    with Connection(app.settings.broker, transport_options=app.celery.conf.broker_transport_options) as connection:
        publish(connection, queue, range(count))
        with connection.SimpleQueue(queue) as simple:
            taken: list[Message] = [simple.get(timeout=5) for _ in range(count)]  # the old holder's, unacknowledged
            start = threading.Barrier(2)
            errors: list[BaseException] = []

            def old_holder() -> None:
                """Acknowledges the even ones and gives the odd ones back, as its channel closes."""
                try:
                    start.wait()
                    for message in taken:
                        if message.payload["n"] % 2 == 0:
                            message.ack()
                        else:
                            message.channel.qos.restore_by_tag(message.delivery_tag)
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=old_holder)
            thread.start()
            start.wait()
            leases.restore_unacked(queue.name)  # the new holder, meanwhile
            thread.join(timeout=60)
            assert not errors
            queued = numbers_in(leases, queue.name)
            assert len(queued) == len(set(queued))  # none twice
            assert set(range(1, count, 2)) <= set(queued)  # every odd one given back
            # An even one is queued only if it was restored before its acknowledgement, not after.
            acked_after: Any = [n for n in queued if n % 2 == 0]
            assert not leases.broker.hlen(leases.layout.unacked), acked_after
