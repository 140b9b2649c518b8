"""Leases: one holder at a time cluster-wide for a named thing, in Redis.

A lease is a key holding its holder's id, with a time to live. The holder renews it (a
heartbeat) well within that time; if the holder dies or pauses, the key expires and another
process (a standby polling ``take``) gets it. Holding a lease is a claim, not a proof:
a holder that was paused may not have noticed it lost the lease, so before each piece of
work it checks again (``held``), which is the fencing the single-active processes rely on.
"""

from __future__ import annotations

import os
import socket
import uuid
from enum import IntEnum

import redis

from tasks.storage.replies import text

# Renew if ours, take if free: 2 taken, 1 renewed, 0 held by another.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Taken(IntEnum):
    """What ``Lease.take`` found."""

    OTHER = 0  # another process holds the lease
    RENEWED = 1  # we held it and still do
    TAKEN = 2  # it was free and now is ours


def holder_id() -> str:
    """A unique id for one holder: host, process and a random part (a restarted pid differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease stored at ``key``, as seen by holder ``owner``, lasting ``ttl`` seconds unless renewed."""

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl_ms = max(1, int(ttl * 1000))
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)

    def take(self) -> Taken:
        """Renew the lease if ours, take it if free; says which (or that another holds it)."""
        return Taken(int(self._take(keys=[self.key], args=[self.owner, self.ttl_ms])))

    def held(self) -> bool:
        """Whether we hold the lease now (the fencing check before each piece of work)."""
        value = self.client.get(self.key)
        return value is not None and text(value) == self.owner

    def holder(self) -> str | None:
        """The id of whoever holds the lease, or None."""
        value = self.client.get(self.key)
        return None if value is None else text(value)

    def release(self) -> bool:
        """Give the lease up if ours (a standby takes it at its next poll); whether we held it."""
        return bool(self._release(keys=[self.key], args=[self.owner]))
