"""The intake stream: accepted events, held durably from the sender's 202 until a batcher has dispatched them.

Each request (or replay chunk) becomes one entry of a Redis stream holding its events as a
JSON array (``events``, their number ``n``), the handler tasks it is meant for
(``targets``: empty for every handler), the sender it came from (``sender``: the API
token's name; absent for the anonymous scope) and, for replays, the events' ids (``ids``),
``tally`` (``1``: the receipt counts, per handler, the events handed to it and those skipped as
already handled) and, for a reprocess, its ``generation`` (the batcher hands the events to the
target handlers again, once per generation: ``tasks.pipeline.dedupe.generation_token``).
The receipt the sender gets is the entry id.

``submit`` also does here, in the web app (which scales out), the per-event work the one active
batcher would otherwise do (``entry_fields``): ``events`` holds each event's canonical JSON
(``tasks.authoring.event_ids``), ``sizes`` their lengths (comma-separated), ``prints`` their
fingerprints (16 hex digits each, one after the other) and, without ``ids``, ``derived`` their ids
as a JSON array (null for an event identified by its occurrence, whose id needs the entry id).
The batcher takes these from the entry, never from what a client sent: the web app computes them
from the parsed events. An entry without them (``submit_json``: events stored as sent, or an
entry from before) is decoded and identified by the batcher itself.

The protocol, all of it here (``Intake``): the web app appends entries (``submit``). Batchers
read them through one consumer group (``join``, ``read``), dispatch their events, and only
then acknowledge and delete them (``ack``), so a crash anywhere after 202 loses nothing:
an entry a batcher read but never acknowledged stays in the group's pending list, and a
live batcher takes it over once it has been idle long enough (``claim``), while a batcher
still dispatching an entry round by round keeps it from looking idle (``keep``). After an
error a batcher takes back what it had read (``read_own``). An entry that cannot be decoded
is moved to a stream of its own (``set_aside``), so it neither blocks nor vanishes.
``backlog`` and ``oldest_age`` tell whether the batchers keep up (``/health``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis

from tasks.authoring.event_ids import canonical_json, derive, fingerprint
from tasks.storage.replies import text

GROUP = "batchers"  # the consumer group every batcher reads the stream in
UNREADABLE_MAX = 10_000  # entries set aside as unreadable that are kept (the oldest trimmed beyond)

# A stream entry as read: its id and its fields as stored.
RawEntry = tuple[str, dict[bytes, bytes]]


class Intake:
    """The intake stream ``stream``; unreadable entries are set aside in the stream ``unreadable``."""

    def __init__(self, client: redis.Redis, stream: str, unreadable: str) -> None:
        self._client = client
        self.stream = stream
        self.unreadable = unreadable

    # The web app: appending -----------------------------------------------------------
    def submit(
        self,
        events: Sequence[dict[str, Any]],
        targets: Iterable[str] = (),
        sender: str | None = None,
        ids: Sequence[str] | None = None,
        *,
        tally: bool = False,
        generation: str | None = None,
    ) -> str:
        """Hold ``events`` durably for the batcher; returns the receipt (stream entry id).

        ``targets`` names handler tasks to deliver to (a replay to selected handlers);
        empty means every handler. ``sender`` is the scope the events are deduplicated in
        (the name of the API token that posted them; None: the anonymous scope). ``ids``
        gives the events' ids (``tasks.authoring.event_ids``) instead of deriving them (a replay
        passes what the event log recorded). ``tally``: the receipt counts, per handler, the events
        handed to it and those skipped as already handled (a replay's report). ``generation``: hand
        the events to the target handlers again, whether or not they had them (a reprocess; once
        per generation). The batcher's per-event work is done here (``entry_fields``).
        """
        fields = entry_fields(events, targets, sender, ids, tally=tally, generation=generation)
        entry = self._client.xadd(self.stream, fields)  # type: ignore[arg-type]
        return text(entry)

    def submit_json(
        self,
        events_json: str | bytes,
        count: int,
        targets: Iterable[str] = (),
        sender: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> str:
        """Like ``submit`` for events already serialized as one JSON array of objects, stored as they are:
        the batcher decodes, encodes and identifies them itself."""
        fields: dict[str, Any] = {"events": events_json, "n": count, "targets": ",".join(sorted(targets))}
        if sender is not None:
            fields["sender"] = sender
        if ids is not None:
            if len(ids) != count:
                raise ValueError(f"{len(ids)} ids for {count} events")
            fields["ids"] = json.dumps(list(ids), separators=(",", ":"))
        entry = self._client.xadd(self.stream, fields)  # type: ignore[arg-type]
        return text(entry)

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

    # Batchers: reading through the consumer group -------------------------------------
    def join(self, consumer: str) -> None:
        """Create the stream and its consumer group if needed, and join the group as ``consumer`` (visible in XINFO)."""
        try:
            self._client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._client.xgroup_createconsumer(self.stream, GROUP, consumer)

    def read(self, consumer: str, block: float, count: int = 100) -> list[RawEntry]:
        """Entries no batcher has read yet, at most ``count``, waiting up to ``block`` seconds for the first;
        they are ``consumer``'s until acknowledged."""
        answer: Any = self._client.xreadgroup(
            GROUP, consumer, {self.stream: ">"}, count=count, block=max(1, int(block * 1000))
        )
        return [(text(entry_id), fields) for _, entries in answer or [] for entry_id, fields in entries]

    def read_own(self, consumer: str, count: int = 10_000) -> list[RawEntry]:
        """The entries ``consumer`` read and has not acknowledged (to take them back after an error)."""
        answer: Any = self._client.xreadgroup(GROUP, consumer, {self.stream: "0"}, count=count)
        return [(text(entry_id), fields) for _, entries in answer or [] for entry_id, fields in entries if fields]

    def keep(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries ``consumer`` is still dispatching, so that nobody ``claim``s them."""
        if entry_ids:
            self._client.xclaim(self.stream, GROUP, consumer, 0, list(entry_ids), justid=True)

    def claim(self, consumer: str, min_idle: float, count: int = 100) -> Iterator[RawEntry]:
        """Take over, for ``consumer``, the entries read but not acknowledged for ``min_idle`` seconds
        (their batcher died), ``count`` at a time."""
        start = "0-0"
        while True:
            answer: Any = self._client.xautoclaim(
                self.stream, GROUP, consumer, int(min_idle * 1000), start_id=start, count=count
            )
            start, entries = text(answer[0]), answer[1]
            for entry_id, fields in entries:
                if fields:  # an entry deleted meanwhile has none
                    yield text(entry_id), fields
            if start == "0-0" or not entries:
                return

    def ack(self, entry_ids: Sequence[str]) -> None:
        """Acknowledge and delete entries whose events are all dispatched."""
        if not entry_ids:
            return
        pipe = self._client.pipeline()
        pipe.xack(self.stream, GROUP, *entry_ids)
        pipe.xdel(self.stream, *entry_ids)
        pipe.execute()

    def fields(self, entry_id: str) -> dict[bytes, bytes] | None:
        """An entry's fields as stored (None: not in the stream any more)."""
        found: Any = self._client.xrange(self.stream, min=entry_id, max=entry_id, count=1)
        return dict(found[0][1]) if found else None

    def set_aside(self, entry_id: str, fields: dict[bytes, bytes], error: str) -> None:
        """Move an entry that cannot be read, with why, to the ``unreadable`` stream (acknowledged and deleted here)."""
        pipe = self._client.pipeline()
        kept: dict[Any, Any] = {**fields, b"entry": entry_id, b"error": error[:500]}
        pipe.xadd(self.unreadable, kept, maxlen=UNREADABLE_MAX, approximate=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    # Monitoring ---------------------------------------------------------------------------
    def backlog(self) -> int:
        """Entries waiting in the stream (not yet acknowledged or deleted by the batcher)."""
        return int(self._client.xlen(self.stream))

    def oldest_age(self, now: float | None = None) -> float | None:
        """Seconds the oldest entry in the stream has waited (None: the stream is empty)."""
        oldest: Any = self._client.xrange(self.stream, count=1)
        if not oldest:
            return None
        return max(0.0, (time.time() if now is None else now) - entry_time(text(oldest[0][0])))


def entry_fields(
    events: Sequence[dict[str, Any]],
    targets: Iterable[str] = (),
    sender: str | None = None,
    ids: Sequence[str] | None = None,
    *,
    tally: bool = False,
    generation: str | None = None,
) -> dict[str, Any]:
    """An intake entry's fields for ``events`` (see the module docstring), with each event's canonical
    JSON, fingerprint and (without ``ids``) derived id: what the batcher would compute per event."""
    if ids is not None and len(ids) != len(events):
        raise ValueError(f"{len(ids)} ids for {len(events)} events")
    texts = [canonical_json(event) for event in events]
    fields: dict[str, Any] = {
        "events": "[" + ",".join(texts) + "]",
        "n": len(events),
        "targets": ",".join(sorted(targets)),
        "sizes": ",".join([str(len(t)) for t in texts]),
    }
    if sender is not None:
        fields["sender"] = sender
    if tally:
        fields["tally"] = 1
    if generation is not None:
        if not generation or "," in generation:
            raise ValueError(f"a reprocess generation must be a non-empty text without commas, got {generation!r}")
        fields["generation"] = generation
    if ids is not None:
        fields["ids"] = json.dumps(list(ids), separators=(",", ":"))
        fields["prints"] = "".join([fingerprint(t) for t in texts])
    else:
        derived = [derive(event, t, sender=sender) for event, t in zip(events, texts, strict=True)]
        fields["derived"] = json.dumps([eid for eid, _ in derived], separators=(",", ":"))
        fields["prints"] = "".join([mark for _, mark in derived])
    return fields


def entry_time(entry_id: str) -> float:
    """When an entry was appended (the milliseconds of its id), in seconds since the epoch."""
    return int(entry_id.split("-")[0]) / 1000
