"""The batcher: intake stream → batches of events → one chord each.

It reads the intake stream through a consumer group, gathers events until a batch is full
(``batch_size``) or the oldest has waited ``batch_interval``, drops what every target
handler already had (dedupe by event id), appends live events to the event log,
dispatches, and only then acknowledges and deletes the stream entries. Entries of a
batcher that died before acknowledging are taken over by a live one after
``claim_idle`` seconds and dispatched again without dedupe (at least once: handlers
are idempotent by ``evt.id``), so a crash never loses an accepted event. Once dispatched,
a batch is finished by its chord; a batcher also sends again the tasks of batches whose
messages the broker lost (tasks/redrive.py), which acknowledgement and requeueing alone
cannot bring back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from kombu.exceptions import KombuError

from tasks.batches import Record
from tasks.dedupe import Deduper
from tasks.dispatch import Selection, dispatch
from tasks.event_ids import canonical_json, event_id
from tasks.eventlog import EventLog
from tasks.intake import GROUP
from tasks.redrive import Redriver

if TYPE_CHECKING:
    from tasks.app import Insights

log = logging.getLogger(__name__)

RECOVER_EVERY = 10.0
REJECTED = "insights:intake:unreadable"  # entries the batcher could not decode (kept for inspection)


@dataclass
class Entry:
    """One intake stream entry: a request's (or replay chunk's) events."""

    id: str
    events: list[dict[str, Any]]
    targets: tuple[str, ...]
    recovered: bool
    batches: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def received(self) -> float:
        """When the web app accepted the events (the stream entry's timestamp)."""
        return int(self.id.split("-")[0]) / 1000


class Batcher:
    """Turns the intake stream into dispatched batches; see the module docstring."""

    def __init__(self, app: Insights, consumer: str | None = None, claim_idle: float = 30.0) -> None:
        self.app = app
        self.settings = app.settings
        self.client = app.services.redis
        self.stream = app.intake.stream
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle = claim_idle
        self.deduper = Deduper(self.client, self.settings.dedupe_window)
        self.event_log = EventLog(self.settings.event_log_dir)
        self.pending: list[Entry] = []
        self.pending_events = 0
        self.oldest = 0.0
        self.last_recovery = 0.0
        self.reread_own = False
        self.redriver = Redriver(app)

    def run(self, stop: threading.Event) -> None:
        """Batch until ``stop`` is set, then flush what is pending."""
        self.ensure_group()
        log.info("batcher %s reading %s", self.consumer, self.stream)
        failures = 0
        while not stop.is_set():
            try:
                self.step()
                failures = 0
            except (redis.RedisError, OSError, KombuError) as exc:
                # Unacknowledged entries stay in the stream and are recovered: wait and go on.
                failures += 1
                self.pending, self.pending_events = [], 0
                self.reread_own = True  # what this batcher had read is still in its pending list
                log.error("batcher %s: %s; retrying (%d)", self.consumer, exc, failures)
                stop.wait(min(30.0, 0.5 * 2**failures))
        self.flush()
        self.event_log.close()

    def ensure_group(self) -> None:
        """Create the stream and its consumer group if needed, and join the group (visible in XINFO)."""
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.client.xgroup_createconsumer(self.stream, GROUP, self.consumer)

    def step(self, max_block: float = 1.0) -> None:
        """Read what arrived (waiting at most until the pending batch is due) and flush if due."""
        now = time.monotonic()
        if self.reread_own:
            self._reread_own()
        if now - self.last_recovery > RECOVER_EVERY:
            self.last_recovery = now
            self.recover()
            self.redrive()
        wait = max_block if not self.pending else max(0.0, self.oldest + self.settings.batch_interval - now)
        if wait > 0:
            answer: Any = self.client.xreadgroup(
                GROUP, self.consumer, {self.stream: ">"}, count=100, block=max(1, int(wait * 1000))
            )
            for _, entries in answer or []:
                for entry_id, fields in entries:
                    self._add(entry_id, fields, recovered=False)
        due = self.pending and time.monotonic() - self.oldest >= self.settings.batch_interval
        if self.pending_events >= self.settings.batch_size or due:
            self.flush()

    def _reread_own(self) -> None:
        """After an error: take back the entries this batcher read but did not dispatch."""
        answer: Any = self.client.xreadgroup(GROUP, self.consumer, {self.stream: "0"}, count=10_000)
        for _, entries in answer or []:
            for entry_id, fields in entries:
                if fields:
                    self._add(entry_id, fields, recovered=True)
        self.reread_own = False

    def recover(self) -> int:
        """Take over entries another batcher read but never acknowledged; returns how many."""
        start, taken = "0-0", 0
        while True:
            answer: Any = self.client.xautoclaim(
                self.stream, GROUP, self.consumer, int(self.claim_idle * 1000), start_id=start, count=100
            )
            start, entries = _text(answer[0]), answer[1]
            for entry_id, fields in entries:
                if fields:
                    self._add(entry_id, fields, recovered=True)
                    taken += 1
            if start == "0-0" or not entries:
                break
        if taken:
            log.warning("batcher %s took over %d unacknowledged intake entries", self.consumer, taken)
            self.flush()
        return taken

    def redrive(self) -> None:
        """Send again the tasks of batches the broker lost (tasks/redrive.py); never stops the batcher."""
        try:
            self.redriver.run()
        except Exception:  # a safety net must not take the batcher down: look again next time
            log.exception("batcher %s: looking for lost batch tasks failed", self.consumer)

    def _add(self, entry_id: bytes | str, fields: dict[bytes, bytes], recovered: bool) -> None:
        targets = _text(fields.get(b"targets", b""))
        try:
            events = json.loads(fields[b"events"])
        except (KeyError, ValueError, RecursionError) as exc:
            self._set_aside(_text(entry_id), fields, exc)
            return
        entry = Entry(_text(entry_id), events, tuple(t for t in targets.split(",") if t), recovered)
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append(entry)
        self.pending_events += len(entry.events)

    def _set_aside(self, entry_id: str, fields: dict[bytes, bytes], exc: Exception) -> None:
        """Move an entry that cannot be read to a stream of its own, so it neither blocks nor vanishes."""
        log.error(
            "batcher %s: intake entry %s cannot be read (%s); moved to %s", self.consumer, entry_id, exc, REJECTED
        )
        pipe = self.client.pipeline()
        kept: dict[Any, Any] = {**fields, b"entry": entry_id, b"error": repr(exc)[:500]}
        pipe.xadd(REJECTED, kept, maxlen=10_000, approximate=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    def flush(self) -> None:
        """Dispatch every pending event, then acknowledge and delete the entries."""
        if not self.pending:
            return
        entries, self.pending, self.pending_events = self.pending, [], 0
        by_targets: dict[tuple[str, ...], list[Entry]] = {}
        for entry in entries:
            by_targets.setdefault(entry.targets, []).append(entry)
        for targets, group in by_targets.items():
            self._dispatch(group, list(targets) or self.app.handler_names(), live=not targets)
        self.app.store.link_receipts(
            {e.id: {"events": len(e.events), "duplicates": e.duplicates, "batches": e.batches} for e in entries}
        )
        ids = [e.id for e in entries]
        pipe = self.client.pipeline()
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()

    def _dispatch(self, entries: Sequence[Entry], handlers: list[str], live: bool) -> None:
        records: list[Record] = []
        owners: list[Entry] = []
        seen: set[str] = set()
        for entry in entries:
            for raw in entry.events:
                encoded = canonical_json(raw)  # encoded once: for the id, the stored batch and the log
                eid = event_id(raw, encoded)
                if eid in seen:
                    entry.duplicates += 1
                    continue
                seen.add(eid)
                records.append([eid, entry.received, raw, encoded])
                owners.append(entry)
        size = self.settings.batch_size
        for start in range(0, len(records), size):
            self._dispatch_chunk(records[start : start + size], owners[start : start + size], handlers, live)

    def _dispatch_chunk(self, records: list[Record], owners: list[Entry], handlers: list[str], live: bool) -> None:
        claims = self.deduper.claim([r[0] for r in records], handlers)
        if any(owner.recovered for owner in owners):
            claims = [list(handlers) for _ in records]  # after a crash: deliver again rather than risk a loss
        kept = [(r, c, o) for r, c, o in zip(records, claims, owners, strict=True) if c]
        for claim, owner in zip(claims, owners, strict=True):
            if not claim:
                owner.duplicates += 1
        if not kept:
            return
        selections: dict[str, Selection] = {}
        for handler in handlers:
            indices = [i for i, (_, claim, _) in enumerate(kept) if handler in claim]
            if indices:
                selections[handler] = None if len(indices) == len(kept) else indices
        batch_records = [r for r, _, _ in kept]
        if live:  # replays to selected handlers are not logged again
            self.event_log.append_encoded([(r[0], r[1], r[3]) for r in batch_records])
        batch_id = dispatch(self.app, batch_records, selections, sorted({o.id for _, _, o in kept}))
        for owner in {id(o): o for _, _, o in kept}.values():
            owner.batches.append(batch_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
