"""Batches in Redis: their events (until handled), their records, and the receipts of requests.

A batch's events are stored once and read by each handler task; its record says, per
handler task, whether it succeeded, and which task messages were sent for it; a receipt
(the intake stream entry id the sender got with its 202) lists the batches its events went
into. Unfinished batches are indexed by dispatch time, so the batcher can find those whose
task messages the broker lost and send them again (tasks/pipeline/redrive.py).
"""

from __future__ import annotations

import json
import json.encoder
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from tasks.storage.keys import Keys
from tasks.storage.replies import text

PENDING = "pending"
DONE = "done"
QUEUED = "queued"

# One stored event: [event id, received (unix time), raw event], optionally followed by the
# raw event's JSON text (from the batcher, which has it already; the raw event is then None
# when the batcher did not decode it: the text is what is stored).
Record = list[Any]

# One task message sent for a batch: {"id": task id, "task": task name, "indices": indices
# into the batch or None for all, "queue": the queue it was sent to}; keyed by label.
TaskRef = dict[str, Any]


_encode_string = json.encoder.encode_basestring_ascii  # what json.dumps does with a string, without its set-up


def _encode_record(record: Record) -> str:
    if len(record) > 3:  # the raw event's JSON is known: do not encode it again
        return f"[{_encode_string(record[0])},{record[1]!r},{record[3]}]"
    return json.dumps(record, separators=(",", ":"))


class BatchStore:
    """Events, records and receipts of batches, kept for ``ttl`` seconds, and for ``done_ttl``
    (default ``ttl``) once a batch is finished."""

    def __init__(self, client: redis.Redis, ttl: int, keys: Keys, done_ttl: int | None = None) -> None:
        self._client = client
        self._ttl = ttl
        self._done_ttl = ttl if done_ttl is None else done_ttl
        self._keys = keys

    # Events -------------------------------------------------------------------------
    def put_events(self, batch_id: str, records: Sequence[Record]) -> None:
        """Store a batch's events (``[id, received, raw]`` each) for its handler tasks."""
        body = "[" + ",".join(_encode_record(record) for record in records) + "]"
        self._client.set(self._keys.batch_events(batch_id), body, ex=self._ttl)

    def events(self, batch_id: str) -> list[Record]:
        """A batch's events; KeyError when they are gone (batch finished or expired)."""
        raw = self._client.get(self._keys.batch_events(batch_id))
        if raw is None:
            raise KeyError(f"the events of batch {batch_id} are no longer stored")
        records: list[Record] = json.loads(raw)
        return records

    # Records ------------------------------------------------------------------------
    def start(
        self,
        batch_id: str,
        events: int,
        tasks: Mapping[str, TaskRef],
        receipts: Iterable[str] = (),
        body: str | None = None,
    ) -> None:
        """Record a batch as dispatched to ``tasks`` (by label) and not yet finished.

        ``body`` is the task id of the chord's ``batch.record``. A batch with tasks is indexed
        as pending until it finishes.
        """
        now = time.time()
        record = {
            "batch": batch_id,
            "state": PENDING,
            "events": events,
            "handlers": {label: None for label in tasks},
            "receipts": sorted(set(receipts)),
            "received": now,
            "tasks": dict(tasks),
            "body": body,
            "resent": 0,
        }
        pipe = self._client.pipeline()
        pipe.set(self._keys.batch(batch_id), json.dumps(record), ex=self._ttl)
        if tasks:
            pipe.zadd(self._keys.pending_batches, {batch_id: now})
        pipe.execute()

    def finish(self, batch_id: str, outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Record every handler task's outcome; the batch is done and its events are dropped.

        Outcomes not given (a batch whose lost tasks were sent again in a chord of their own)
        are read from what each handler task kept (``Keys.done``). From now on the record, the
        outcomes kept and the receipts of the batch's requests live ``done_ttl`` seconds.
        """
        record = self.get(batch_id) or {"batch": batch_id, "handlers": {}}
        for outcome in outcomes:
            record["handlers"][outcome["handler"]] = {k: v for k, v in outcome.items() if k != "handler"}
        missing = [label for label, outcome in record["handlers"].items() if outcome is None]
        for label, outcome in self.done_outcomes(batch_id, missing).items():
            record["handlers"][label] = {k: v for k, v in outcome.items() if k != "handler"}
        record["state"] = DONE
        record["finished"] = time.time()
        record["failed"] = sorted(name for name, o in record["handlers"].items() if o and not o["ok"])
        pipe = self._client.pipeline()
        pipe.set(self._keys.batch(batch_id), json.dumps(record), ex=self._done_ttl)
        pipe.delete(self._keys.batch_events(batch_id))
        pipe.zrem(self._keys.pending_batches, batch_id)
        for label in record["handlers"]:
            pipe.expire(self._keys.done(batch_id, label), self._done_ttl)
        for receipt in record.get("receipts", []):
            pipe.expire(self._keys.receipt(receipt), self._done_ttl)
        pipe.execute()
        return record

    def get(self, batch_id: str) -> dict[str, Any] | None:
        """The record of a batch, or None if unknown or expired."""
        raw = self._client.get(self._keys.batch(batch_id))
        return None if raw is None else json.loads(raw)

    def get_many(self, batch_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The records of several batches (None for each unknown or expired one)."""
        if not batch_ids:
            return []
        values = self._client.mget([self._keys.batch(batch_id) for batch_id in batch_ids])
        return [None if raw is None else json.loads(raw) for raw in values]

    def done_outcomes(self, batch_id: str, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The outcomes handler tasks kept for these labels of a batch (labels not done are left out)."""
        if not labels:
            return {}
        values = self._client.mget([self._keys.done(batch_id, label) for label in labels])
        return {label: json.loads(raw) for label, raw in zip(labels, values, strict=True) if raw is not None}

    # Unfinished batches (tasks/pipeline/redrive.py) -------------------------------------------
    def overdue(self, sent_before: float, count: int) -> list[str]:
        """Ids of unfinished batches whose tasks were last sent before ``sent_before`` (oldest first)."""
        ids: list[Any] = self._client.zrangebyscore(self._keys.pending_batches, "-inf", sent_before, start=0, num=count)
        return [text(i) for i in ids]

    def forget(self, batch_id: str) -> None:
        """Drop a batch from the unfinished ones (its record expired or is done)."""
        self._client.zrem(self._keys.pending_batches, batch_id)

    def resent(self, batch_id: str, tasks: Mapping[str, str], body: str | None) -> bool:
        """Note that the tasks of these labels (new task ids) and the chord's ``batch.record``
        were sent again; returns False if the batch finished meanwhile (nothing noted)."""
        key = self._keys.batch(batch_id)
        noted = False

        def note(pipe: Any) -> None:
            nonlocal noted
            raw = pipe.get(key)
            record = None if raw is None else json.loads(raw)
            pipe.multi()
            if record is None or record["state"] != PENDING:
                pipe.zrem(self._keys.pending_batches, batch_id)
                noted = False
                return
            for label, task_id in tasks.items():
                record["tasks"][label]["id"] = task_id
            record["body"] = body
            record["resent"] = record.get("resent", 0) + 1
            pipe.set(key, json.dumps(record), ex=self._ttl)
            pipe.zadd(self._keys.pending_batches, {batch_id: time.time()})
            noted = True

        self._client.transaction(note, key)
        return noted

    # Receipts -----------------------------------------------------------------------
    def link_receipts(self, links: dict[str, dict[str, Any]]) -> None:
        """Record, per receipt, the batches its events went into and how many were duplicates."""
        pipe = self._client.pipeline()
        for receipt, link in links.items():
            pipe.set(self._keys.receipt(receipt), json.dumps(link), ex=self._ttl)
        pipe.execute()

    def receipt(self, receipt: str) -> dict[str, Any]:
        """Where a request's events are: queued, pending in batches, or done (with failures)."""
        raw = self._client.get(self._keys.receipt(receipt))
        if raw is None:
            return {"receipt": receipt, "state": QUEUED}
        link = json.loads(raw)
        records = [self.get(batch_id) for batch_id in link["batches"]]
        done = all(r is not None and r["state"] == DONE for r in records)
        failed = sorted({name for r in records if r for name in r.get("failed", [])})
        return {"receipt": receipt, "state": DONE if done else PENDING, **link, "failed": failed}
