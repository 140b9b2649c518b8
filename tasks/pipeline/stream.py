"""Durable intake: accepted events are appended to a Redis stream before the sender hears 202.

Each request (or replay chunk) becomes one stream entry holding its events as a JSON array,
the sender they came from (the API token's name; none for the anonymous scope) and, for
replays, their ids. The batcher reads entries through a consumer group and acknowledges
them only after their events have been dispatched, so a crash anywhere after 202 loses
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import redis

GROUP = "batchers"


class Intake:
    """Appends accepted events to the intake stream ``stream``; batchers set aside entries they
    cannot read in the stream ``unreadable``."""

    def __init__(self, client: redis.Redis, stream: str, unreadable: str) -> None:
        self._client = client
        self.stream = stream
        self.unreadable = unreadable

    def submit(
        self,
        events: Sequence[dict[str, Any]],
        targets: Iterable[str] = (),
        sender: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> str:
        """Hold ``events`` durably for the batcher; returns the receipt (stream entry id).

        ``targets`` names handler tasks to deliver to (a replay to selected handlers);
        empty means every handler. ``sender`` is the scope the events are deduplicated in
        (the name of the API token that posted them; None: the anonymous scope). ``ids``
        gives the events' ids (``tasks.authoring.event_ids``) instead of deriving them (a replay
        passes what the event log recorded).
        """
        return self.submit_json(json.dumps(events, separators=(",", ":")), len(events), targets, sender, ids)

    def submit_json(
        self,
        events_json: str | bytes,
        count: int,
        targets: Iterable[str] = (),
        sender: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> str:
        """Like ``submit`` for events already serialized as one JSON array of objects."""
        fields: dict[str, Any] = {"events": events_json, "n": count, "targets": ",".join(sorted(targets))}
        if sender is not None:
            fields["sender"] = sender
        if ids is not None:
            if len(ids) != count:
                raise ValueError(f"{len(ids)} ids for {count} events")
            fields["ids"] = json.dumps(list(ids), separators=(",", ":"))
        entry = self._client.xadd(self.stream, fields)  # type: ignore[arg-type]
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def queued(self, entry_id: str) -> tuple[bool, str | None]:
        """Whether an entry is still in the stream (accepted, not yet batched), and its sender."""
        try:
            found: Any = self._client.xrange(self.stream, min=entry_id, max=entry_id, count=1)
        except redis.ResponseError:  # not a stream id at all
            return False, None
        if not found:
            return False, None
        sender = found[0][1].get(b"sender")
        return True, sender.decode() if sender is not None else None

    def backlog(self) -> int:
        """Entries waiting in the stream (not yet acknowledged or deleted by the batcher)."""
        return int(self._client.xlen(self.stream))
