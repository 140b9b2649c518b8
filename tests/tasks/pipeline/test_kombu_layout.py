"""The Redis keys kombu's Redis transport keeps messages in, as ``KombuRedisLayout`` reads them."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import redis
from kombu import Connection, Exchange, Queue

from config.settings import Settings
from tasks.pipeline.kombu_layout import KombuRedisLayout


def test_the_layout_finds_the_messages_kombu_queued_by_priority_and_holds_unacknowledged(settings: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    options: dict[str, Any] = {
        "global_keyprefix": f"layout{tag}:",
        "sep": "~",
        "priority_steps": [0, 4, 8],
        "unacked_key": f"held{tag}",
        "unacked_index_key": f"held-index{tag}",
    }
    layout = KombuRedisLayout.from_options(options)
    client = redis.Redis.from_url(settings.redis)
    name = f"q{tag}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    try:
        with Connection(settings.redis, transport_options=options) as connection:
            producer = connection.Producer()
            for priority in (0, 3, 5, 9):
                producer.publish({"p": priority}, exchange=queue.exchange, routing_key=name, priority=priority,
                                 declare=[queue])  # fmt: skip
            assert {key: client.llen(key) for key in layout.queue_keys(name)} == {
                f"layout{tag}:{name}": 2,  # 0 and 3
                f"layout{tag}:{name}~4": 1,
                f"layout{tag}:{name}~8": 1,
            }
            with connection.SimpleQueue(queue) as simple:
                taken = [simple.get(timeout=5) for _ in range(4)]  # taken, not acknowledged
                for message in taken:
                    assert client.zscore(layout.unacked_index, message.delivery_tag) is not None
                    payload, _, routing_key = json.loads(client.hget(layout.unacked, message.delivery_tag) or b"")
                    published = json.loads(base64.b64decode(payload["body"]))["p"]
                    assert routing_key == name and layout.message_priority(payload) == published
                    message.ack()
    finally:
        for key in client.scan_iter(f"layout{tag}:*"):
            client.delete(key)
        client.close()


def test_the_default_layout_is_kombus() -> None:
    layout = KombuRedisLayout.from_options(None)
    assert (layout.unacked, layout.unacked_index) == ("unacked", "unacked_index")
    assert [layout.queue_key("q", p) for p in range(10)] == ["q"] * 3 + ["q\x06\x163"] * 3 + ["q\x06\x166"] * 3 + [
        "q\x06\x169"
    ]
