"""The batcher: intake stream → batches of events → one chord each.

It reads the intake stream through a consumer group, gathers events until a batch is full
(``batch_size``) or the oldest has waited ``batch_interval``, gives each event its id
(``tasks.authoring.event_ids``: in its sender's scope), drops what every target handler already had
(dedupe by event id), sets aside an event that differs from the one on record under its id
(a conflict, ``tasks.pipeline.conflicts``), appends live events to the event log (in a thread of its
own while the batch is dispatched: ``INSIGHTS_EVENT_LOG``), dispatches, and acknowledges and deletes
the stream entries only once their batches are in the log: an acknowledged event is in the log.
The write is pipelined: the next round is read and dispatched while a round's write finishes
(one round at a time; writes go in order), and the round's entries are acknowledged when it is
done (``_settle``). Entries of a batcher that died before acknowledging are taken over by a live
one after ``claim_idle`` seconds and dispatched (and logged) again without dedupe (at least once:
handlers are idempotent by ``evt.id``; the log may then hold such an event twice, which a replay's
dedupe drops), so a crash never loses an accepted event. Once dispatched, a batch is finished by its
chord; a batcher also sends again the tasks of batches whose messages the broker lost
(tasks/pipeline/redrive.py), which acknowledgement and requeueing alone cannot bring back.

Senders share the pipeline fairly: each dispatch *round* takes at most ``batch_size`` events
of each sender (the token that posted them), in the order the sender sent them, and a
request spread over rounds (one larger than a batch) goes on only while fewer than
``IN_FLIGHT`` of its batches are being handled. So another sender's small request waits
behind a batch or two of a huge one, not behind all of it, and one sender's events keep
their order. An entry is acknowledged once all its events are dispatched; until then this
batcher keeps it from looking abandoned (``recover``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from kombu.exceptions import KombuError
from pymongo.errors import PyMongoError

from tasks.authoring.event_ids import Identifier, canonical_json, fingerprint
from tasks.pipeline.batch_store import DONE, Record
from tasks.pipeline.conflicts import Conflict, Conflicts
from tasks.pipeline.dedupe import Claim, Deduper, generation_token
from tasks.pipeline.dispatch import Selection
from tasks.pipeline.event_log import EncodedRecord
from tasks.pipeline.event_logs import open_event_log
from tasks.pipeline.stream import Intake, RawEntry, entry_time
from tasks.storage.lease import Lease, Taken, holder_id
from tasks.storage.replies import text

if TYPE_CHECKING:
    from tasks.app import Insights

log = logging.getLogger(__name__)

RECOVER_EVERY = 10.0  # seconds between looks for abandoned entries; well under claim_idle
IN_FLIGHT = 2  # batches of one request being handled at once while it is spread over rounds
STALL_AFTER = 60.0  # seconds after which a request's next batch goes even if its last ones are not recorded done
# The dedupe script's error when a deployment has numbered every set of handlers it can (dedupe.py):
# no retry changes that, so the entries of such a batch are set aside instead.
HANDLER_SETS_FULL = "too many distinct handler sets"
LOG_POLL = 0.005  # seconds a read waits at most while a round's event-log write is under way (to acknowledge it soon)


class LeaseLost(Exception):
    """Another batcher holds the active batcher's lease now (this one paused or lost Redis)."""


class HandlerSetsFull(Exception):
    """The deployment numbered every set of handlers the dedupe records can name (dedupe.py):
    events of a set of handlers never claimed before cannot be deduplicated, so not dispatched."""


@dataclass
class Entry:
    """One intake stream entry: a request's (or replay chunk's) events."""

    id: str
    events: list[Any]  # the events (dicts), or their canonical JSON texts when the entry gives ``prints``
    targets: tuple[str, ...]
    recovered: bool
    sender: str | None = None  # the API token that posted the events; None: the anonymous scope
    # The events' ids when the entry gives them: a replay of the event log's, or those the web app derived
    # (``prints`` set; None for an event identified by its occurrence).
    ids: list[str | None] | None = None
    # The events' fingerprints (16 hex digits each) when the web app derived them; ``events`` then holds
    # each event's canonical JSON text rather than the event.
    prints: str | None = None
    batches: list[str] = field(default_factory=list)
    duplicates: int = 0
    conflicts: int = 0
    offset: int = 0  # events dispatched in earlier rounds
    last_round: float = 0.0  # when events of it were last dispatched (time.monotonic)
    # Per handler task: [events handed to it, events skipped as already handled]; kept when the entry
    # asks for it (``tally``: a replay's report), else None (no per-handler work on live requests).
    tally: dict[str, list[int]] | None = None
    # A reprocess's generation: its events go to the target handlers again, once per generation.
    generation: str | None = None

    def link(self) -> dict[str, Any]:
        """What the receipt records: who sent the events, the batches they went into, duplicates and
        conflicts, and (when tallied) per handler ``[handed to it, skipped as already handled]``."""
        link: dict[str, Any] = {
            "sender": self.sender,
            "events": len(self.events),
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "batches": self.batches,
        }
        if self.tally is not None:
            link["handlers"] = self.tally
        return link

    def count(self, handlers: Iterable[str], handed: bool) -> None:
        """Tally one event as handed to ``handlers`` or skipped by them (when the entry is tallied)."""
        if self.tally is not None:
            for handler in handlers:
                self.tally.setdefault(handler, [0, 0])[0 if handed else 1] += 1

    @property
    def received(self) -> float:
        """When the web app accepted the events (the stream entry's timestamp)."""
        return entry_time(self.id)


Part = tuple[Entry, int, list[Any]]  # an entry, the index of its first event dispatched now, those events


def _derived(fields: dict[bytes, bytes]) -> tuple[list[str], list[str | None], str]:
    """The canonical JSON texts, ids and fingerprints of an entry the web app derived them for
    (``tasks.pipeline.stream.entry_fields``); ValueError when they do not fit together."""
    body = fields[b"events"].decode("ascii")  # canonical JSON is ASCII
    sizes = [int(size) for size in fields[b"sizes"].split(b",")] if fields[b"sizes"] else []
    prints = fields[b"prints"].decode("ascii")
    derived = b"ids" not in fields
    ids = json.loads(fields[b"derived"] if derived else fields[b"ids"])
    texts, position = [], 1
    for size in sizes:
        texts.append(body[position : position + size])
        position += size + 1
    if not (
        isinstance(ids, list)
        and len(ids) == len(sizes)
        and len(prints) == 16 * len(sizes)
        and body == "[" + ",".join(texts) + "]"
        and all(isinstance(i, str) or (derived and i is None) for i in ids)
    ):
        raise ValueError(f"the derived fields do not fit the entry's {len(sizes)} events")
    return texts, ids, prints


@dataclass
class Unlogged:
    """A dispatched round whose batches are being written to the event log, and the entries it
    finished: acknowledged once the writes (and those of the rounds before) are done."""

    writes: list[Future[None]]
    done: list[Entry]


class Batcher:
    """Turns the intake stream into dispatched batches; see the module docstring."""

    def __init__(self, app: Insights, consumer: str | None = None, claim_idle: float = 30.0) -> None:
        self.app = app
        self.settings = app.settings
        self.client = app.services.redis
        self.intake: Intake = app.intake
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle = claim_idle
        self.deduper = Deduper(self.client, self.settings.dedupe_window, app.keys)
        self.deduper.note_window()  # says so when the window changed: the records kept are not read
        self.conflict_store = Conflicts(self.client, self.settings.conflicts_max, app.keys)
        self.conflicts: list[Conflict] = []  # found while dispatching, kept before the entries are acknowledged
        self.event_log = open_event_log(self.settings, app.services.mongo)
        self.log_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log")
        self.log_writes: list[Future[None]] = []  # this round's batches, being written to the log
        self.unlogged: deque[Unlogged] = deque()  # rounds dispatched whose writes may be under way, oldest first
        self.log_in_background = True  # off after a failed write, until a write succeeds
        self.pending: list[Entry] = []  # read, not yet all dispatched
        self.pending_events = 0  # events read since the last round: a full batch of them starts one at once
        self.oldest = 0.0
        self.last_recovery = 0.0
        self.reread_own = False
        self.redriver = app.redriver()
        # One batcher is active cluster-wide (per-user order needs one reader of the stream); the others stand by.
        self.lease = Lease(
            self.client, app.keys.lease("batcher"), f"{self.consumer}:{holder_id()}", self.settings.lease_ttl
        )
        self.lease_every = self.settings.lease_ttl / 4
        self.renewed: float | None = None  # when the lease was last taken or renewed (monotonic); None: standing by

    def run(self, stop: threading.Event) -> None:
        """Batch while holding the active batcher's lease, stand by while another holds it, until
        ``stop`` is set; then flush what is pending and give the lease up."""
        log.info("batcher %s ready for %s", self.consumer, self.intake.stream)
        failures = 0
        while not stop.is_set():
            try:
                if not self.active():
                    stop.wait(self.lease_every)
                    continue
                self.step()
                failures = 0
            except LeaseLost:
                log.warning("batcher %s lost the active batcher's lease: standing by", self.consumer)
                self.pending, self.pending_events, self.conflicts = [], 0, []  # the new holder claims them
                self.log_writes, self.unlogged = [], deque()  # ...and these: not acknowledged here any more
                self.renewed = None
            except (redis.RedisError, OSError, KombuError, PyMongoError) as exc:
                # Unacknowledged entries stay in the stream and are recovered: wait and go on.
                failures += 1
                self.pending, self.pending_events, self.conflicts, self.log_writes = [], 0, [], []
                self.unlogged = deque()  # not acknowledged: read and dispatched again
                self.reread_own = True  # what this batcher had read is still in its pending list
                log.error("batcher %s: %s; retrying (%d)", self.consumer, exc, failures)
                stop.wait(min(30.0, 0.5 * 2**failures))
        try:
            if self.renewed is not None and self.lease.held():
                self.flush(whole=True)
            self.lease.release()
        except (redis.RedisError, OSError, KombuError, PyMongoError, LeaseLost) as exc:
            # What was not acknowledged stays in the stream: the next active batcher claims it.
            log.error("batcher %s: stopping without flushing: %s", self.consumer, exc)
        finally:
            self.close()

    def close(self) -> None:
        """Finish the event-log writes under way and close the log."""
        self.log_writer.shutdown(wait=True)
        self.event_log.close()

    def active(self) -> bool:
        """Take or renew the active batcher's lease (every quarter of its TTL); whether we hold it.
        On taking it, join the group and claim at once what the last holder read and left."""
        now = time.monotonic()
        if self.renewed is not None and now - self.renewed < self.lease_every:
            return True
        taken = self.lease.take()
        if taken is Taken.OTHER:
            if self.renewed is not None:
                raise LeaseLost()
            return False
        self.renewed = now
        if taken is Taken.TAKEN:
            self.take_over()
        return True

    def take_over(self) -> None:
        """On taking the lease: join the group and claim at once every entry read and not
        acknowledged (the last holder's, and this batcher's own if it held the lease before).
        The claim returns this batcher's own entries too, so they are not read again."""
        log.warning("batcher %s is the active batcher", self.consumer)
        self.ensure_group()
        self.reread_own = False
        self._add_all(self.intake.claim(self.consumer, 0), recovered=True)

    def ensure_group(self) -> None:
        """Create the stream and its consumer group if needed, and join the group (visible in XINFO)."""
        self.intake.join(self.consumer)

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
        if self.unlogged:  # acknowledge the rounds whose writes are done; look again soon for the others
            self._settle(keep=len(self.unlogged))
            wait = min(wait, LOG_POLL) if self.unlogged else wait
        if wait > 0:
            self._add_all(self.intake.read(self.consumer, block=wait), recovered=False)
        due = self.pending and time.monotonic() - self.oldest >= self.settings.batch_interval
        if self.pending_events >= self.settings.batch_size or due:
            self.flush()

    def _reread_own(self) -> None:
        """After an error: take back the entries this batcher read but did not dispatch."""
        self._add_all(self.intake.read_own(self.consumer), recovered=True)
        self.reread_own = False

    def recover(self) -> int:
        """Take over entries another batcher read but never acknowledged; returns how many."""
        # Entries still being dispatched, round by round, are not abandoned: reset their idle time.
        unlogged = [entry.id for unlogged in self.unlogged for entry in unlogged.done]
        self.intake.keep(self.consumer, [entry.id for entry in self.pending] + unlogged)
        taken = self._add_all(self.intake.claim(self.consumer, self.claim_idle), recovered=True)
        if taken:
            log.warning("batcher %s took over %d unacknowledged intake entries", self.consumer, taken)
            self.flush()
        return taken

    def redrive(self) -> None:
        """Send again the tasks of batches the broker lost (tasks/pipeline/redrive.py); never stops the batcher.
        Only while holding the active batcher's lease (asked of Redis, as before a dispatch): one looks at a time."""
        try:
            if not self.lease.held():
                return
            self.redriver.run()
        except Exception:  # a safety net must not take the batcher down: look again next time
            log.exception("batcher %s: looking for lost batch tasks failed", self.consumer)

    def _add_all(self, entries: Iterable[RawEntry], recovered: bool) -> int:
        """Add stream entries to the pending ones, skipping any pending already (read twice:
        claimed, then read again); returns how many were new."""
        known = {entry.id for entry in self.pending}
        added = 0
        for entry_id, fields in entries:
            if entry_id not in known:
                known.add(entry_id)
                self._add(entry_id, fields, recovered)
                added += 1
        return added

    def _add(self, entry_id: str, fields: dict[bytes, bytes], recovered: bool) -> None:
        targets = text(fields.get(b"targets", b""))
        sender = text(fields.get(b"sender", b"")) or None
        prints: str | None = None
        ids: list[str | None] | None
        events: list[Any]
        try:
            if b"sizes" in fields and b"prints" in fields:
                events, ids, prints = _derived(fields)
            else:
                events = json.loads(fields[b"events"])
                ids = json.loads(fields[b"ids"]) if b"ids" in fields else None
                if ids is not None and (len(ids) != len(events) or not all(isinstance(i, str) for i in ids)):
                    raise ValueError(f"{len(ids)} ids for {len(events)} events, or an id that is not a string")
        except (KeyError, ValueError, TypeError, RecursionError) as exc:
            self._set_aside(entry_id, fields, exc)
            return
        entry = Entry(entry_id, events, tuple(t for t in targets.split(",") if t), recovered, sender, ids, prints)
        entry.tally = {} if fields.get(b"tally") else None
        entry.generation = text(fields.get(b"generation", b"")) or None
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append(entry)
        self.pending_events += len(entry.events)

    def _set_aside(self, entry_id: str, fields: dict[bytes, bytes], exc: Exception) -> None:
        """Move an entry that cannot be read or dispatched to a stream of its own, so it neither blocks nor vanishes."""
        log.error(
            "batcher %s: intake entry %s cannot be read or dispatched (%s); moved to %s",
            self.consumer,
            entry_id,
            exc,
            self.intake.unreadable,
        )
        self.intake.set_aside(entry_id, fields, repr(exc))

    def _set_aside_group(self, group: Sequence[Part], exc: Exception) -> None:
        """Set aside (``_set_aside``) the entries of parts that cannot be deduplicated, whatever
        retrying would do (a deployment out of handler-set numbers): they leave the pending ones."""
        entries = {id(entry): entry for entry, _, _ in group}
        self.pending = [e for e in self.pending if id(e) not in entries]
        for entry in entries.values():
            fields = self.intake.fields(entry.id)
            if fields is not None:
                self._set_aside(entry.id, fields, exc)

    def flush(self, whole: bool = False) -> None:
        """Dispatch rounds (``_round``) back to back while entries not yet begun wait behind them;
        a request spread over rounds goes on in later steps, as its batches are handled.
        ``whole``: every pending event at once, and wait for the log to acknowledge them (when stopping)."""
        while self.pending:
            parts = self._round(whole)
            if not parts:
                break
            self._dispatch_round(parts)
            if whole or not any(entry.offset == 0 for entry in self.pending):
                break
        self.pending_events, self.oldest = 0, time.monotonic()
        if whole:
            self._settle(keep=0)

    def _dispatch_round(self, parts: list[Part]) -> None:
        """Dispatch one round and keep its conflicts; the entries all of whose events are dispatched
        are acknowledged and deleted once the round's batches are in the log: after the next round
        is dispatched, or sooner (``_settle``). Fencing: not once this batcher lost the active lease."""
        if self.renewed is not None and not self.lease.held():
            raise LeaseLost()
        by_targets: dict[tuple[tuple[str, ...], str | None], list[Part]] = {}
        for part in parts:
            by_targets.setdefault((part[0].targets, part[0].generation), []).append(part)
        for (targets, generation), group in by_targets.items():
            try:
                handlers = list(targets) or self.app.handler_names()
                # A reprocess is never logged: its events are handed again, not received again.
                self._dispatch(group, handlers, live=not targets and generation is None, generation=generation)
            except redis.ResponseError as exc:
                if HANDLER_SETS_FULL not in str(exc):
                    raise
                self._set_aside_group(group, HandlerSetsFull(str(exc)))
        self._keep_conflicts()
        writes, self.log_writes = self.log_writes, []
        now = time.monotonic()
        for entry, _, events in parts:
            entry.offset, entry.last_round = entry.offset + len(events), now
        done = [e for e in self.pending if e.offset >= len(e.events)]
        self.pending = [e for e in self.pending if e.offset < len(e.events)]
        self.unlogged.append(Unlogged(writes, done))
        self._settle(keep=1)  # the round before is written by now, mostly: this one's write goes on meanwhile

    def _round(self, whole: bool) -> list[Part]:
        """What this round dispatches: per sender, in its order, up to ``batch_size`` events of its
        pending entries; a sender's later entries wait while an earlier one is not finished."""
        if whole:
            return [(e, e.offset, e.events[e.offset :]) for e in self.pending]
        size = self.settings.batch_size
        taken: dict[str | None, int] = {}  # events this round takes per sender
        waiting: set[str | None] = set()  # senders whose next events wait for a later round
        parts = []
        for entry in self.pending:
            room = size - taken.get(entry.sender, 0)
            if entry.sender in waiting or room <= 0 or not self._ready(entry):
                waiting.add(entry.sender)
                continue
            events = entry.events[entry.offset : entry.offset + room]
            parts.append((entry, entry.offset, events))
            taken[entry.sender] = taken.get(entry.sender, 0) + len(events)
            if entry.offset + len(events) < len(entry.events):
                waiting.add(entry.sender)  # its rest goes first in a later round
        return parts

    def _ready(self, entry: Entry) -> bool:
        """Whether an entry takes part in this round: a new one always; one spread over rounds
        once fewer than ``IN_FLIGHT`` of its batches are being handled (or after ``STALL_AFTER``)."""
        if entry.offset == 0 or time.monotonic() - entry.last_round > STALL_AFTER:
            return True
        records = [self.app.store.get(batch) for batch in entry.batches[-IN_FLIGHT:]]
        return sum(record is not None and record["state"] != DONE for record in records) < IN_FLIGHT

    def _dispatch(self, parts: Sequence[Part], handlers: list[str], live: bool, generation: str | None) -> None:
        records: list[Record] = []
        prints: list[str] = []
        owners: list[Entry] = []
        seen: dict[str, str] = {}  # event id -> fingerprint, within these entries
        for entry, start, events in parts:
            received, ids, marks = entry.received, entry.ids, entry.prints
            identify = Identifier(entry.sender, entry.id)
            for index, raw in enumerate(events, start):
                if marks is not None:  # derived by the web app: the event's canonical JSON, id and fingerprint
                    encoded, raw = raw, None  # decoded only if a handler's shard key needs it (dispatch.py)
                    eid = ids[index] or identify.occurrence(index)  # type: ignore[index]
                    mark = marks[16 * index : 16 * index + 16]
                else:
                    encoded = canonical_json(raw)  # encoded once: for the id, the fingerprint, the batch and the log
                    if ids is None:
                        eid, mark = identify(raw, encoded, index)
                    else:
                        eid, mark = ids[index], fingerprint(encoded)
                known = seen.get(eid)
                if known is None:
                    seen[eid] = mark
                    records.append([eid, received, raw, encoded])
                    prints.append(mark)
                    owners.append(entry)
                elif known == mark:
                    entry.duplicates += 1
                    entry.count(handlers, handed=False)
                else:
                    self._conflict(entry, eid, known, mark, encoded)
        size = self.settings.batch_size
        for start in range(0, len(records), size):
            end = start + size
            chunk = (records[start:end], prints[start:end], owners[start:end])
            self._dispatch_chunk(*chunk, handlers, live, generation)

    def _claim(
        self, records: list[Record], prints: list[str], handlers: list[str], generation: str | None
    ) -> list[Claim]:
        """Claim the events for ``handlers``; for a reprocess, per handler for its generation's token
        (``generation_token``) as well: an event goes to a handler when new for that token (once per
        generation, whatever the handler had), and the handler itself is recorded as having had it."""
        ids = [r[0] for r in records]
        if generation is None:
            return self.deduper.claim(ids, prints, handlers)
        tokens = {generation_token(handler, generation): handler for handler in handlers}
        claims = self.deduper.claim(ids, prints, [*handlers, *tokens])
        return [Claim(tuple(tokens[n] for n in claim.handlers if n in tokens), claim.known) for claim in claims]

    def _dispatch_chunk(
        self,
        records: list[Record],
        prints: list[str],
        owners: list[Entry],
        handlers: list[str],
        live: bool,
        generation: str | None = None,
    ) -> None:
        claims = self._claim(records, prints, handlers, generation)
        recovered = any(owner.recovered for owner in owners)
        kept: list[tuple[Record, Sequence[str], Entry]] = []
        for record, mark, claim, owner in zip(records, prints, claims, owners, strict=True):
            if claim.known is not None:
                self._conflict(owner, record[0], claim.known, mark, record[3])
                continue
            given = handlers if recovered else claim.handlers  # after a crash: deliver again rather than risk a loss
            if given:
                kept.append((record, given, owner))
            else:
                owner.duplicates += 1
            if owner.tally is not None:
                owner.count(given, handed=True)
                owner.count([h for h in handlers if h not in given], handed=False)
        if not kept:
            return
        selections: dict[str, Selection] = {}
        for handler in handlers:
            indices = [i for i, (_, claim, _) in enumerate(kept) if handler in claim]
            if indices:
                selections[handler] = None if len(indices) == len(kept) else indices
        batch_records = [r for r, _, _ in kept]
        batch_id = uuid.uuid4().hex
        if live:  # replays to selected handlers are not logged again
            self._log([(r[0], r[1], r[3], o.sender) for r, _, o in kept], batch_id)
        self.app.dispatcher.dispatch(batch_records, selections, sorted({o.id for _, _, o in kept}), batch_id)
        for owner in {id(o): o for _, _, o in kept}.values():
            owner.batches.append(batch_id)

    def _log(self, records: list[EncodedRecord], batch_id: str) -> None:
        """Append a batch to the event log: in the background while dispatching (``_settle`` waits for
        it before the entries are acknowledged), or now, before dispatching, after a failed write."""
        if self.log_in_background:
            self.log_writes.append(self.log_writer.submit(self.event_log.append_encoded, records, batch_id))
        else:
            self.event_log.append_encoded(records, batch_id)
            self.log_in_background = True

    def _settle(self, keep: int) -> None:
        """Acknowledge (and link the receipts of) the entries of the rounds whose batches are in the
        event log, oldest first: waiting for all but the last ``keep`` rounds, and the rest as far as
        their writes are done. Raise if a write failed: its entries and those of later rounds are
        then not acknowledged (they are read and dispatched again)."""
        while self.unlogged and (len(self.unlogged) > keep or all(w.done() for w in self.unlogged[0].writes)):
            written = self.unlogged[0]
            try:
                for write in written.writes:
                    write.result()
            except BaseException:
                self.log_in_background = False  # while the log fails, nothing is dispatched before it is written
                self.unlogged = deque()
                raise
            self.unlogged.popleft()
            if written.done:
                self.app.store.link_receipts({e.id: e.link() for e in written.done})
                self.intake.ack([e.id for e in written.done])

    def _conflict(self, owner: Entry, eid: str, known: str, mark: str, encoded: str) -> None:
        """Count and remember an event that differs from the one on record under its id."""
        owner.conflicts += 1
        self.conflicts.append(Conflict(owner.sender, eid, known, mark, encoded, owner.id))

    def _keep_conflicts(self) -> None:
        """Store the conflicts found (before their entries are acknowledged) and warn about them."""
        if not self.conflicts:
            return
        found, self.conflicts = self.conflicts, []
        self.conflict_store.add(found)
        shown = ", ".join(sorted({c.id for c in found})[:5])
        log.warning(
            "batcher %s: %d event(s) differ from the event on record under their id (%s%s); not dispatched, "
            "kept as conflicts (python -m tasks conflicts list)",
            self.consumer, len(found), shown, ", ..." if len(found) > 5 else "",
        )  # fmt: skip
