"""Where kombu's Redis transport keeps a broker's messages: the one reading of its key layout.

kombu keeps a queue's messages in a Redis list per priority step (the queue's name for step
0, ``<queue><sep><step>`` for the others), and the messages a consumer took and has not
acknowledged in the ``unacked`` hash (delivery tag → ``[message, exchange, routing key]``)
with their delivery time in the ``unacked_index`` sorted set. Every key carries the
``global_keyprefix`` transport option. The shard leases (tasks/pipeline/shard_leases.py)
and the redriver (tasks/pipeline/redrive.py) both read these keys through ``KombuRedisLayout``,
computed from the broker transport options as kombu computes them (``Channel._q_for_pri``,
``Channel.priority``, ``_get_message_priority``).
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel

MIN_PRIORITY, MAX_PRIORITY = 0, 9  # the range kombu's virtual transports clamp a message's priority to


@dataclass(frozen=True)
class KombuRedisLayout:
    """The Redis keys of kombu's Redis transport for one set of broker transport options."""

    prefix: str = ""  # global_keyprefix
    unacked: str = RedisChannel.unacked_key  # with the prefix
    unacked_index: str = RedisChannel.unacked_index_key  # with the prefix
    sep: str = RedisChannel.sep
    priority_steps: tuple[int, ...] = tuple(PRIORITY_STEPS)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> KombuRedisLayout:
        """The layout kombu uses with these broker transport options (Celery's ``broker_transport_options``)."""
        options = options or {}
        prefix = str(options.get("global_keyprefix", "") or "")
        return cls(
            prefix=prefix,
            unacked=prefix + str(options.get("unacked_key", RedisChannel.unacked_key)),
            unacked_index=prefix + str(options.get("unacked_index_key", RedisChannel.unacked_index_key)),
            sep=str(options.get("sep", RedisChannel.sep)),
            priority_steps=tuple(int(p) for p in options.get("priority_steps", PRIORITY_STEPS)),
        )

    def step(self, priority: int) -> int:
        """The priority step a message of ``priority`` is kept under (kombu's ``Channel.priority``)."""
        return self.priority_steps[bisect(self.priority_steps, priority) - 1]

    def queue_key(self, queue: str, priority: int = 0) -> str:
        """The Redis list holding ``queue``'s messages of ``priority`` (kombu's ``_q_for_pri``, prefixed)."""
        step = self.step(priority)
        return f"{self.prefix}{queue}{self.sep}{step}" if step else f"{self.prefix}{queue}"

    def queue_keys(self, queue: str) -> list[str]:
        """Every Redis list of ``queue``, one per priority step."""
        return list(dict.fromkeys(self.queue_key(queue, step) for step in self.priority_steps))

    @staticmethod
    def message_priority(payload: Mapping[str, Any]) -> int:
        """A stored message's priority, clamped as kombu does (0 when it has none)."""
        try:
            return max(min(int(payload["properties"]["priority"]), MAX_PRIORITY), MIN_PRIORITY)
        except (TypeError, ValueError, KeyError):
            return MIN_PRIORITY
