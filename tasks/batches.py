"""Batches in Redis: their events (until handled), their records, and the receipts of requests.

A batch's events are stored once and read by each handler task; its record says, per
handler task, whether it succeeded; a receipt (the intake stream entry id the sender got
with its 202) lists the batches its events went into.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

PENDING = "pending"
DONE = "done"
QUEUED = "queued"

# One stored event: [event id, received (unix time), raw event], optionally followed by the
# raw event's JSON text (from the batcher, which encoded it once already).
Record = list[Any]


def _encode_record(record: Record) -> str:
    if len(record) > 3:  # the raw event's JSON is known: do not encode it again
        return f"[{json.dumps(record[0])},{record[1]!r},{record[3]}]"
    return json.dumps(record, separators=(",", ":"))


class BatchStore:
    """Events, records and receipts of batches, kept for ``ttl`` seconds."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self._client = client
        self._ttl = ttl

    # Events -------------------------------------------------------------------------
    def put_events(self, batch_id: str, records: Sequence[Record]) -> None:
        """Store a batch's events (``[id, received, raw]`` each) for its handler tasks."""
        body = "[" + ",".join(_encode_record(record) for record in records) + "]"
        self._client.set(f"insights:batchdata:{batch_id}", body, ex=self._ttl)

    def events(self, batch_id: str) -> list[Record]:
        """A batch's events; KeyError when they are gone (batch finished or expired)."""
        raw = self._client.get(f"insights:batchdata:{batch_id}")
        if raw is None:
            raise KeyError(f"the events of batch {batch_id} are no longer stored")
        records: list[Record] = json.loads(raw)
        return records

    # Records ------------------------------------------------------------------------
    def start(self, batch_id: str, events: int, tasks: Iterable[str], receipts: Iterable[str] = ()) -> None:
        """Record a batch as dispatched to ``tasks`` and not yet finished."""
        record = {
            "batch": batch_id,
            "state": PENDING,
            "events": events,
            "handlers": {name: None for name in tasks},
            "receipts": sorted(set(receipts)),
            "received": time.time(),
        }
        self._client.set(f"insights:batch:{batch_id}", json.dumps(record), ex=self._ttl)

    def finish(self, batch_id: str, outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Record every handler task's outcome; the batch is done and its events are dropped."""
        record = self.get(batch_id) or {"batch": batch_id, "handlers": {}}
        for outcome in outcomes:
            record["handlers"][outcome["handler"]] = {k: v for k, v in outcome.items() if k != "handler"}
        record["state"] = DONE
        record["finished"] = time.time()
        record["failed"] = sorted(name for name, o in record["handlers"].items() if o and not o["ok"])
        pipe = self._client.pipeline()
        pipe.set(f"insights:batch:{batch_id}", json.dumps(record), ex=self._ttl)
        pipe.delete(f"insights:batchdata:{batch_id}")
        pipe.execute()
        return record

    def get(self, batch_id: str) -> dict[str, Any] | None:
        """The record of a batch, or None if unknown or expired."""
        raw = self._client.get(f"insights:batch:{batch_id}")
        return None if raw is None else json.loads(raw)

    # Receipts -----------------------------------------------------------------------
    def link_receipts(self, links: dict[str, dict[str, Any]]) -> None:
        """Record, per receipt, the batches its events went into and how many were duplicates."""
        pipe = self._client.pipeline()
        for receipt, link in links.items():
            pipe.set(f"insights:receipt:{receipt}", json.dumps(link), ex=self._ttl)
        pipe.execute()

    def receipt(self, receipt: str) -> dict[str, Any]:
        """Where a request's events are: queued, pending in batches, or done (with failures)."""
        raw = self._client.get(f"insights:receipt:{receipt}")
        if raw is None:
            return {"receipt": receipt, "state": QUEUED}
        link = json.loads(raw)
        records = [self.get(batch_id) for batch_id in link["batches"]]
        done = all(r is not None and r["state"] == DONE for r in records)
        failed = sorted({name for r in records if r for name in r.get("failed", [])})
        return {"receipt": receipt, "state": DONE if done else PENDING, **link, "failed": failed}
