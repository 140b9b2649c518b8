"""Batch records: per batch of events, which handlers succeeded and which failed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

PENDING = "pending"
DONE = "done"


class BatchRecords:
    """Stores one JSON record per dispatched batch in Redis, kept for ``ttl`` seconds."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self._client = client
        self._ttl = ttl

    def _key(self, batch_id: str) -> str:
        return f"insights:batch:{batch_id}"

    def start(self, batch_id: str, events: int, handlers: Iterable[str]) -> dict[str, Any]:
        """Record a batch as dispatched and not yet finished."""
        record = {
            "batch": batch_id,
            "state": PENDING,
            "events": events,
            "handlers": {name: None for name in handlers},
            "received": time.time(),
        }
        self._client.set(self._key(batch_id), json.dumps(record), ex=self._ttl)
        return record

    def finish(self, batch_id: str, outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Record every handler's outcome; the batch is done."""
        record = self.get(batch_id) or {"batch": batch_id, "handlers": {}}
        for outcome in outcomes:
            record["handlers"][outcome["handler"]] = {k: v for k, v in outcome.items() if k != "handler"}
        record["state"] = DONE
        record["finished"] = time.time()
        record["failed"] = sorted(name for name, o in record["handlers"].items() if o and not o["ok"])
        self._client.set(self._key(batch_id), json.dumps(record), ex=self._ttl)
        return record

    def get(self, batch_id: str) -> dict[str, Any] | None:
        """The record of a batch, or None if unknown or expired."""
        raw = self._client.get(self._key(batch_id))
        return None if raw is None else json.loads(raw)
