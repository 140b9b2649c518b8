"""Conflicts: events that arrived under a known id but differ from the event recorded for it.

The batcher does not dispatch such an event (handlers upsert by ``evt.id``, so it would
either be dropped by them or overwrite the first one) and does not drop it silently: it
keeps it here, with the sender, the id, both fingerprints and the time, counts it in the
request's receipt (``conflicts``) and logs a warning. ``python -m tasks conflicts list``
shows them.

Of the event itself only the first ``EVENT_KEPT_BYTES`` (4 KiB) of its canonical JSON are
kept, with its full length and whether it was cut: a conflict holds a few KiB of Redis
memory however large the event (any sender can make conflicts, and Redis is shared with
intake and the broker). The fingerprint still tells which event it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tasks.storage.kept import KeptStream
from tasks.storage.keys import Keys

EVENT_KEPT_BYTES = 4096  # of a conflicting event's JSON, at most this much is kept


@dataclass(frozen=True)
class Conflict:
    """One event refused as a conflict."""

    sender: str | None  # the API token name that posted it; None: the anonymous scope
    id: str  # the event id (``evt.id``) both events share
    known: str  # fingerprint of the event on record under that id
    fingerprint: str  # fingerprint of this event
    event_json: str  # this event, as (canonical) JSON (only its first EVENT_KEPT_BYTES are kept)
    receipt: str  # the intake entry (the sender's receipt) it came in


class Conflicts:
    """Conflicting events in a bounded Redis stream (the oldest trimmed beyond ``max_entries``)."""

    def __init__(self, client: redis.Redis, max_entries: int, keys: Keys) -> None:
        self._stream = KeptStream(client, keys.conflicts, max_entries)

    def add(self, conflicts: Sequence[Conflict]) -> None:
        """Keep conflicting events (one round trip for all), each cut to its first ``EVENT_KEPT_BYTES``."""
        now = time.time()
        records = []
        for c in conflicts:
            encoded = c.event_json.encode()
            kept = encoded[:EVENT_KEPT_BYTES].decode(errors="ignore")  # never half a character
            records.append(
                {
                    "sender": c.sender if c.sender is not None else "",
                    "id": c.id,
                    "known": c.known,
                    "fingerprint": c.fingerprint,
                    "event": kept,
                    "size": len(encoded),
                    "truncated": int(len(encoded) > EVENT_KEPT_BYTES),
                    "receipt": c.receipt,
                    "time": now,
                }
            )
        self._stream.add(records)

    def list(self, sender: str | None = None) -> Iterator[dict[str, Any]]:
        """Every kept conflict (oldest first), optionally of one sender (token name)."""
        for entry_id, fields in self._stream.entries():
            if sender is None or (fields["sender"] or None) == sender:
                yield _decode(entry_id, fields)

    def count(self) -> int:
        """How many conflicts are kept."""
        return self._stream.count()


def _decode(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A kept conflict: ``event`` is the event when kept whole (None when cut), ``event_json``
    the JSON kept (whole, or its first ``EVENT_KEPT_BYTES``), ``size`` its full length in bytes."""
    text = fields["event"]
    truncated = fields.get("truncated") == "1"  # records kept before events were cut have no such field
    return {
        "entry": entry_id,
        "sender": fields["sender"] or None,
        "id": fields["id"],
        "known": fields["known"],
        "fingerprint": fields["fingerprint"],
        "event": None if truncated else json.loads(text),
        "event_json": text,
        "size": int(fields.get("size", len(text.encode()))),
        "truncated": truncated,
        "receipt": fields["receipt"],
        "time": float(fields["time"]),
    }
