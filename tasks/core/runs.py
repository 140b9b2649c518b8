"""Runs started without waiting (``POST /run``): what they run, who started them, how many
each client has outstanding, and when an unpolled run is forgotten.

A run's result is delivered once (``GET /result``) and then forgotten. A run nobody polls
expires after ``expires`` seconds: its record goes at once (Redis TTL), its Celery result
with the next ``maintenance.expire_runs`` on beat, so unpolled runs cannot pile up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from tasks.storage.keys import Keys
from tasks.storage.replies import text


class Runs:
    """The outstanding runs of every client, in Redis."""

    def __init__(self, client: redis.Redis, expires: float, keys: Keys) -> None:
        self._redis = client
        self.expires = expires
        self._keys = keys

    def outstanding(self, client: str) -> int:
        """How many runs ``client`` started that were neither delivered nor expired."""
        key = self._keys.runs_of(client)
        pipe = self._redis.pipeline()
        pipe.zremrangebyscore(key, "-inf", time.time())
        pipe.zcard(key)
        return int(pipe.execute()[1])

    def record(self, task_id: str, kind: str, name: str, client: str, owner: str | None) -> None:
        """Remember a started run: its function, the client it counts against, the token that owns it."""
        deadline = time.time() + self.expires
        meta = json.dumps({"kind": kind, "name": name, "client": client, "owner": owner})
        pipe = self._redis.pipeline()
        pipe.set(self._keys.run(task_id), meta, ex=max(1, int(self.expires)))
        pipe.zadd(self._keys.runs_of(client), {task_id: deadline})
        pipe.expire(self._keys.runs_of(client), max(1, int(self.expires)))
        pipe.zadd(self._keys.run_deadlines, {task_id: deadline})
        pipe.execute()

    def get(self, task_id: str) -> dict[str, Any] | None:
        """A run's record, or None (unknown, delivered or expired)."""
        raw = self._redis.get(self._keys.run(task_id))
        return None if raw is None else dict(json.loads(raw))

    def finish(self, task_id: str, run: dict[str, Any]) -> None:
        """Forget a delivered run's record."""
        pipe = self._redis.pipeline()
        pipe.delete(self._keys.run(task_id))
        pipe.zrem(self._keys.runs_of(str(run.get("client"))), task_id)
        pipe.zrem(self._keys.run_deadlines, task_id)
        pipe.execute()

    def expire(self, forget: Callable[[str], None], now: float | None = None) -> int:
        """Call ``forget`` (drop the Celery result) for every run past its deadline; returns how many."""
        found: list[bytes] = self._redis.zrangebyscore(self._keys.run_deadlines, "-inf", now or time.time())  # type: ignore[assignment]
        due = [text(t) for t in found]
        for task_id in due:
            forget(task_id)
            self._redis.zrem(self._keys.run_deadlines, task_id)
        return len(due)
