"""Conflicts: events that arrived under a known id but differ from the event recorded for it.

The batcher does not dispatch such an event (handlers upsert by ``evt.id``, so it would
either be dropped by them or overwrite the first one) and does not drop it silently: it
keeps it here, with the sender, the id, both fingerprints and the time, counts it in the
request's receipt (``conflicts``) and logs a warning. ``python -m tasks.cli conflicts list``
shows them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

STREAM = "insights:conflicts"


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
    """A bounded Redis stream of conflicting events (the oldest trimmed beyond ``max_entries``)."""

    def __init__(self, client: redis.Redis, max_entries: int) -> None:
        self._client = client
        self._max = max_entries

    def add(self, conflicts: Sequence[Conflict]) -> None:
        """Keep conflicting events (one round trip for all)."""
        if not conflicts:
            return
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for c in conflicts:
            fields = {
                "sender": c.sender if c.sender is not None else "",
                "id": c.id,
                "known": c.known,
                "fingerprint": c.fingerprint,
                "event": c.event_json,
                "receipt": c.receipt,
                "time": now,
            }
            pipe.xadd(STREAM, fields, maxlen=self._max, approximate=True)  # type: ignore[arg-type]
        pipe.execute()

    def list(self, sender: str | None = None) -> Iterator[dict[str, Any]]:
        """Every kept conflict (oldest first), optionally of one sender (token name)."""
        start = "-"
        while True:
            page: list[Any] = self._client.xrange(STREAM, min=start, max="+", count=500)  # type: ignore[assignment]
            if not page:
                return
            for entry_id, fields in page:
                conflict = _decode(entry_id, fields)
                if sender is None or conflict["sender"] == sender:
                    yield conflict
            start = "(" + _text(page[-1][0])

    def count(self) -> int:
        """How many conflicts are kept."""
        return int(self._client.xlen(STREAM))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    text = {_text(k): _text(v) for k, v in fields.items()}
    return {
        "entry": _text(entry_id),
        "sender": text["sender"] or None,
        "id": text["id"],
        "known": text["known"],
        "fingerprint": text["fingerprint"],
        "event": json.loads(text["event"]),
        "receipt": text["receipt"],
        "time": float(text["time"]),
    }
