"""Conflicts: events that arrived under a known id but differ from the event recorded for it.

The batcher does not dispatch such an event (handlers upsert by ``evt.id``, so it would
either be dropped by them or overwrite the first one) and does not drop it silently: it
keeps it here, with the sender, the id, both fingerprints and the time, counts it in the
request's receipt (``conflicts``) and logs a warning. ``python -m tasks conflicts list``
shows them.
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


@dataclass(frozen=True)
class Conflict:
    """One event refused as a conflict."""

    sender: str | None  # the API token name that posted it; None: the anonymous scope
    id: str  # the event id (``evt.id``) both events share
    known: str  # fingerprint of the event on record under that id
    fingerprint: str  # fingerprint of this event
    event_json: str  # this event, as (canonical) JSON
    receipt: str  # the intake entry (the sender's receipt) it came in


class Conflicts:
    """Conflicting events in a bounded Redis stream (the oldest trimmed beyond ``max_entries``)."""

    def __init__(self, client: redis.Redis, max_entries: int, keys: Keys) -> None:
        self._stream = KeptStream(client, keys.conflicts, max_entries)

    def add(self, conflicts: Sequence[Conflict]) -> None:
        """Keep conflicting events (one round trip for all)."""
        now = time.time()
        self._stream.add(
            {
                "sender": c.sender if c.sender is not None else "",
                "id": c.id,
                "known": c.known,
                "fingerprint": c.fingerprint,
                "event": c.event_json,
                "receipt": c.receipt,
                "time": now,
            }
            for c in conflicts
        )

    def list(self, sender: str | None = None) -> Iterator[dict[str, Any]]:
        """Every kept conflict (oldest first), optionally of one sender (token name)."""
        for entry_id, fields in self._stream.entries():
            if sender is None or (fields["sender"] or None) == sender:
                yield _decode(entry_id, fields)

    def count(self) -> int:
        """How many conflicts are kept."""
        return self._stream.count()


def _decode(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "entry": entry_id,
        "sender": fields["sender"] or None,
        "id": fields["id"],
        "known": fields["known"],
        "fingerprint": fields["fingerprint"],
        "event": json.loads(fields["event"]),
        "receipt": fields["receipt"],
        "time": float(fields["time"]),
    }
