"""The event log in MongoDB: compressed documents per batch, shared by every host of a deployment.

Whichever batcher dispatches a batch appends it (``append_encoded``): its events become the same
JSON lines the local segments hold (``tasks.pipeline.event_log.encode_lines``), cut into *parts*
of at most ``PART_BYTES`` of lines (a single larger line goes alone), each part compressed into a
zlib stream (level 1) and stored as one document — or as several *chunks* of at most ``CHUNK_BYTES``
when its compressed form is larger, so that no document nears MongoDB's 16 MB cap whatever an
event's size. A document of the collection ``batches`` (database ``<MONGO_DB_PREFIX>-eventlog``)::

    {"_id": "<batch id>.<part>.<chunk>", "batch": "<batch id>", "part": 0, "chunk": 0, "chunks": 1,
     "first": <receive time of the part's first event, integer µs>, "last": <…of its last, µs>,
     "events": <lines>, "bytes": <length of the lines>, "written": <unix time of the write>,
     "data": <BSON binary: the zlib stream, or this chunk of it>}

The streams are written with ISA-L's deflate (the ``isal`` package, ``compress``) when it is
installed: a standard zlib stream, read back by the standard library's ``zlib`` like any other,
made about 6x faster than ``zlib`` level 1 (it is most of the log's cost to the batcher) and no
larger; without ``isal``, with ``zlib`` itself.

Times are integer microseconds since the epoch (numbers, not datetimes: exact, and portable to
servers like nx-27017), indexed on ``first`` and ``last``.

Clock. ``written`` (unix seconds, a number) is MongoDB's clock, not the writing host's: each log
object learns the server's time from ``hello`` (``localTime``) and follows it on its own clock
between looks (again after ``CLOCK_REFRESH`` seconds, or at once when its own clock jumped).
A write that took longer than ``WRITE_SLACK`` seconds (a stalled server) is stamped again once it
went through. nx-27017 keeps no BSON timestamps and compares ``$currentDate``'s dates wrongly,
hence numbers and ``hello``.

Order. Reading merges the parts into one sequence by (receive time, part id, place in the part):
events are read in the order they were received (the intake stream's clock, one for every host),
whichever batcher logged them; events received in the same microsecond follow by batch id, then
in the order their batch holds them. That order is exact, whatever the time a batch spans (see
"Memory" below). A read is a snapshot: it reads the parts written (by the server's clock) up to
``S``, the moment it began plus ``CLOCK_TOLERANCE`` (what any host wrote before the read began is
in it); parts written later are not read (the replay's own batches, say).

Positions and resuming. A ``Position`` is where the last event read stands, with the snapshot it
was read in: ``Position("<received µs, 17 digits>/<part id>@<S in ms>", <index in the part>)``.
Reading from it yields (1) the events of the log after it in the order above, and (2) every event
of a part written after ``S - resume_margin`` (``RESUME_MARGIN`` seconds by default), whatever
its receive time: parts logged late — a batch written in the background, entries claimed after
a takeover, hours old — that the earlier snapshot could not see. So no event is skipped across
resumes; events of parts written in the margin before ``S`` (and, when a resumed read is stopped
again while it reads such parts, of some more) may be read twice. Replays send events with the
ids the log recorded, so a repeat is dropped by the batcher's dedupe. A position without ``@``
(written before snapshots were recorded) resumes by (1) only.

Memory. At most ``max_open_parts`` parts (and ``max_open_bytes`` of their lines) are decoded at
once, however long a time one batch spans (entries claimed hours after they were received make
such batches): when a part must be opened and the cap is reached, the open part whose next
event comes last is closed and opened again (fetched and decoded anew) when its turn comes.
A part's documents are inflated one after another as they arrive (never more than the part's
declared size, at most ``max_part_bytes``); a document naming more chunks than a part of
``max_part_bytes`` can need is malformed.

Retention deletes the documents whose ``last`` is older than the cut-off: one ``delete_many``,
idempotent, so two runs at once are harmless.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import math
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bson import Binary
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tasks.pipeline.event_log import EncodedRecord, Position, encode_event, encode_lines
from tasks.pipeline.parsing import OnMalformed, json_object, stored_object

try:  # ISA-L: the same zlib streams, made ~6x faster than by zlib itself
    from isal.isal_zlib import compress as _deflate
except ImportError:  # pragma: no cover - isal is in requirements.txt
    _deflate = zlib.compress

log = logging.getLogger(__name__)

COLLECTION = "batches"
PART_BYTES = 4 * 1024 * 1024  # JSON lines per part (a single larger line goes alone)
CHUNK_BYTES = 8 * 1024 * 1024  # compressed bytes per document: half of MongoDB's 16 MB cap
DEFAULT_MAX_PART_BYTES = 64 * 1024 * 1024  # a part claiming more (uncompressed) is refused when read
DEFAULT_MAX_OPEN_PARTS = 16  # parts decoded at once while reading
DEFAULT_MAX_OPEN_BYTES = 64 * 1024 * 1024  # ...and their lines (at least two parts are open whatever their size)
LEVEL = 1  # JSON lines shrink 5-10x at level 1 (ISA-L's or zlib's); higher levels cost the batcher more CPU
DUPLICATE_KEY = 11000
MICROS = 1_000_000
CLOCK_REFRESH = 10.0  # seconds between looks at the server's clock
CLOCK_JUMP = 0.5  # the host's clock moved this much more (or less) than the monotonic one: look again
WRITE_SLACK = 2.0  # a write taking longer than this is stamped again once it went through
CLOCK_TOLERANCE = 0.05  # how far two hosts' views of the server's clock may differ (a look costing more is retried)
RESUME_MARGIN = 5.0  # resuming reads every part written after (snapshot - this), whatever its receive time

Key = tuple[int, str, int]  # (received µs, part id, index in the part)


def micros(unix_time: float) -> int:
    """A unix time in integer microseconds, as the documents keep times."""
    return round(unix_time * MICROS)


class ServerClock:
    """MongoDB's clock as seen from this host: the server's ``localTime`` (``hello``), followed on
    ``clock`` (the host's, by default ``time.time``) between looks, looked at again after
    ``CLOCK_REFRESH`` seconds or when ``clock`` moved otherwise than ``time.monotonic``. Strictly
    increasing on one object: what it stamped before a read's snapshot is in it, what after is not."""

    def __init__(self, database: Database[dict[str, Any]], clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock
        self.offset = 0.0  # server time minus host time
        self.synced: tuple[float, float] | None = None  # (host time, monotonic time) of the last look
        self.last = 0.0  # the last time told
        self._lock = threading.Lock()

    def now(self, fresh: bool = False) -> float:
        """The server's time (unix seconds); ``fresh``: ask the server now."""
        with self._lock:
            here, steady = self.clock(), time.monotonic()
            if fresh or self.synced is None or not self._close(here, steady):
                self._sync()
                here = self.clock()
            self.last = max(here + self.offset, self.last + 1e-6)
            return self.last

    def _close(self, here: float, steady: float) -> bool:
        """Whether the last look is recent and the host's clock ran steadily since."""
        assert self.synced is not None
        moved, elapsed = here - self.synced[0], steady - self.synced[1]
        return elapsed < CLOCK_REFRESH and abs(moved - elapsed) < CLOCK_JUMP

    def _sync(self) -> None:
        for _ in range(3):  # a slow answer says the time less precisely: ask again
            before = self.clock()
            reply = self.database.command("hello")
            after = self.clock()
            if after - before < CLOCK_TOLERANCE:
                break
        server = reply["localTime"]
        if not isinstance(server, datetime):
            raise TypeError(f"hello answered a localTime that is not a date: {server!r}")
        stamp = (server if server.tzinfo else server.replace(tzinfo=UTC)).timestamp()
        self.offset = stamp + 0.0005 - (before + after) / 2  # localTime is cut to the millisecond
        self.synced = (after, time.monotonic())


@dataclass(frozen=True)
class _Part:
    """One part read back: its id, the receive time of its first event (µs), when it was written
    (server seconds), its lines, and where its documents are (batch id, part number)."""

    id: str
    first: int
    written: float
    data: bytes
    batch: str
    number: int


@dataclass
class _Cursor:
    """An open part being merged: its sorted entries and the next one's index; ``late``: read
    whatever its receive times (written after the resumed snapshot's margin)."""

    part: _Part
    late: bool
    entries: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    index: int = 0
    size: int = field(init=False)  # the part's lines (bytes)

    def __post_init__(self) -> None:
        self.size = len(self.part.data)

    def close(self) -> None:
        """Let its decoded lines and events go; where it stands stays."""
        self.entries = []
        self.part = replace(self.part, data=b"")


@dataclass
class ReadStats:
    """What the last ``read`` of a log held at most at once, and how often it opened a part again."""

    open_parts_peak: int = 0
    open_bytes_peak: int = 0
    reopened: int = 0


class MongoEventLog:
    """The event log as documents of ``database.batches``; see the module docstring."""

    def __init__(
        self,
        database: Database[dict[str, Any]],
        *,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        max_open_parts: int = DEFAULT_MAX_OPEN_PARTS,
        max_open_bytes: int = DEFAULT_MAX_OPEN_BYTES,
        resume_margin: float = RESUME_MARGIN,
        clock: Callable[[], float] = time.time,
        close_client: bool = False,
    ) -> None:
        self.database = database
        self.collection: Collection[dict[str, Any]] = database[COLLECTION]
        self.max_part_bytes = max(max_part_bytes, PART_BYTES)
        # A part of max_part_bytes compresses to about as much at worst: this many chunks, one more for slack.
        self.max_chunks = math.ceil(self.max_part_bytes / CHUNK_BYTES) + 1
        self.max_open_parts = max(2, max_open_parts)
        self.max_open_bytes = max_open_bytes
        self.resume_margin = max(0.0, resume_margin)
        self.clock = ServerClock(database, clock)
        self.read_stats = ReadStats()
        self._close_client = close_client
        self._indexed = False

    @property
    def description(self) -> str:
        """What a replay checkpoint records to make sure it resumes the same log."""
        return f"eventlog:mongodb:{self.database.name}.{COLLECTION}"

    # -- writing ---------------------------------------------------------------------------

    def append_encoded(self, records: Sequence[EncodedRecord], batch: str | None = None) -> None:
        """Store ``(id, received, event as ASCII JSON, sender or None)`` records of one batch
        (``batch``: its id; a new one if None) as one document per part and chunk, stamped
        ``written`` with the server's clock (again after a write slower than ``WRITE_SLACK``)."""
        if not records:
            return
        batch = batch or uuid.uuid4().hex
        lines = encode_lines(records)
        documents = []
        for part, (start, end) in enumerate(_cut(lines, PART_BYTES)):
            raw = "".join(lines[start:end]).encode("ascii")
            received = [record[1] for record in records[start:end]]
            data = compress(raw)
            chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
            for number, chunk in enumerate(chunks):
                documents.append(
                    {
                        "_id": f"{batch}.{part:04d}.{number:04d}",
                        "batch": batch,
                        "part": part,
                        "chunk": number,
                        "chunks": len(chunks),
                        "first": micros(min(received)),
                        "last": micros(max(received)),
                        "events": end - start,
                        "bytes": len(raw),
                        "written": 0.0,
                        "data": Binary(chunk),
                    }
                )
        began = time.monotonic()
        written = self.clock.now()
        for document in documents:
            document["written"] = written
        self._insert(documents)
        if time.monotonic() - began > WRITE_SLACK:  # readers may have begun between the stamp and the write
            ids = [document["_id"] for document in documents]
            self.collection.update_many({"_id": {"$in": ids}}, {"$set": {"written": self.clock.now(fresh=True)}})

    def append(
        self, records: Sequence[tuple[str, float, dict[str, Any]]], sender: str | None = None, batch: str | None = None
    ) -> None:
        """Store ``(event id, received unix time, raw event)`` records of one sender as one batch."""
        self.append_encoded([(eid, received, encode_event(event), sender) for eid, received, event in records], batch)

    def _insert(self, documents: list[dict[str, Any]]) -> None:
        """Insert the documents; one already there (a retried write that had gone through) is fine."""
        collection = self._ready()
        try:
            if len(documents) == 1:
                collection.insert_one(documents[0])
            else:
                collection.insert_many(documents, ordered=False)
        except DuplicateKeyError:
            pass
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise

    def _ready(self) -> Collection[dict[str, Any]]:
        """The collection, with its indexes made on first use (creating an existing index is a no-op)."""
        if not self._indexed:
            self.collection.create_index([("first", 1)])
            self.collection.create_index([("last", 1)])
            self._indexed = True
        return self.collection

    def close(self) -> None:
        """Close the MongoDB client if this log made it."""
        if self._close_client:
            self.database.client.close()

    def __enter__(self) -> MongoEventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def read(
        self,
        start: Position | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        on_malformed: OnMalformed | None = None,
    ) -> Iterator[tuple[Position, dict[str, Any]]]:
        """Yield ``(position of the record, record)`` in receive order (see the module docstring),
        after ``start`` (and the parts written late), of the events received from ``since`` to
        ``until`` (unix times, inclusive). ``read_stats`` tells what it held at most.

        A document, chunk or line that cannot be read (bad fields, a broken or oversized zlib
        stream, a line that is not a JSON object with a numeric ``received``) is logged, reported
        to ``on_malformed(part or document id, line index or 0)`` and skipped.
        """
        after, mark = _position_key(start) if start is not None else (None, None)
        snapshot = self.clock.now(fresh=True) + CLOCK_TOLERANCE  # what another host wrote just before is in it
        stamp = f"@{math.floor(snapshot * 1000)}"
        low = micros(since) if since is not None else 0
        high = micros(until) if until is not None else None
        late_after = None if mark is None else mark - self.resume_margin
        query: dict[str, Any] = {"written": {"$lte": snapshot}}
        if low:
            query["last"] = {"$gte": low}
        if after is not None and late_after is None:
            query["last"] = {"$gte": max(low, after[0])}
        elif after is not None:
            query["$or"] = [{"last": {"$gte": after[0]}}, {"written": {"$gt": late_after}}]
        if high is not None:
            query["first"] = {"$lte": high}
        stats = self.read_stats = ReadStats()
        cursor = self._ready().find(query).sort([("first", 1), ("_id", 1)]).batch_size(16)
        parts = self._parts(cursor, on_malformed)
        counter = itertools.count()
        heap: list[tuple[Key, int, dict[str, Any], _Cursor]] = []  # the open parts, by their next event
        parked: list[tuple[Key, int, _Cursor]] = []  # parts closed for room, by their next event
        open_bytes = 0
        upcoming = next(parts, None)
        while heap or parked or upcoming is not None:
            # Open every part that may hold the smallest event not yet read: new parts that begin by
            # then, closed ones whose next event it is; close the one needed last when over the cap.
            while True:
                floor = heap[0][0] if heap else None
                opening: _Cursor | None
                if parked and (upcoming is None or parked[0][0][0] < upcoming.first):
                    if floor is not None and parked[0][0] > floor:
                        break
                    key, _, opening = heapq.heappop(parked)
                    opening = self._reopen(opening, key, snapshot)
                    stats.reopened += 1
                elif upcoming is not None:
                    if floor is not None and upcoming.first > floor[0]:
                        break
                    late = late_after is not None and upcoming.written > late_after
                    opening = _Cursor(upcoming, late, self._entries(upcoming, on_malformed))
                    upcoming = next(parts, None)
                else:
                    break
                if opening is None or opening.index >= len(opening.entries):
                    continue
                while len(heap) >= 2 and (
                    len(heap) >= self.max_open_parts or open_bytes + opening.size > self.max_open_bytes
                ):
                    last = max(range(len(heap)), key=lambda i: heap[i][0])
                    key, _, _, closing = heap[last]
                    heap[last] = heap[-1]
                    heap.pop()
                    heapq.heapify(heap)
                    open_bytes -= closing.size
                    closing.close()
                    heapq.heappush(parked, (key, next(counter), closing))
                key, record = opening.entries[opening.index]
                heapq.heappush(heap, (key, next(counter), record, opening))
                open_bytes += opening.size
                stats.open_parts_peak = max(stats.open_parts_peak, len(heap))
                stats.open_bytes_peak = max(stats.open_bytes_peak, open_bytes)
            if not heap:
                continue
            key, _, record, part = heapq.heappop(heap)
            part.index += 1
            if part.index < len(part.entries):
                following = part.entries[part.index]
                heapq.heappush(heap, (following[0], next(counter), following[1], part))
            else:
                open_bytes -= part.size
                part.close()
            if (after is not None and key <= after and not part.late) or key[0] < low:
                continue
            if high is not None and key[0] > high:
                continue
            yield Position(f"{key[0]:017d}/{key[1]}{stamp}", key[2]), record

    def _reopen(self, closed: _Cursor, key: Key, snapshot: float) -> _Cursor | None:
        """A part closed for room, fetched and decoded again, at the event ``key``; None if it is gone
        (retention deleted it meanwhile). Its malformed lines were reported when it was first opened."""
        part = closed.part
        query = {
            "_id": {"$gte": f"{part.id}.", "$lt": f"{part.id}/"},  # '/' follows '.': the part's chunks
            "batch": part.batch,
            "part": part.number,
            "written": {"$lte": snapshot},
        }
        again = next(self._parts(self.collection.find(query).sort("_id", 1), None, quiet=True), None)
        if again is None:
            log.warning("event log part %s: deleted while it was read; the rest of its events skipped", part.id)
            return None
        entries = self._entries(again, None, quiet=True)
        return _Cursor(again, closed.late, entries, bisect.bisect_left(entries, key, key=lambda entry: entry[0]))

    def _parts(
        self, documents: Iterator[dict[str, Any]], on_malformed: OnMalformed | None, quiet: bool = False
    ) -> Iterator[_Part]:
        """The parts the documents hold (a part's chunks are adjacent in ``(first, _id)`` order), each
        inflated chunk by chunk as its documents come: at most its declared size is held."""
        current: _Inflating | None = None
        skipping: str | None = None  # a part found broken: its other chunks go silently

        def malformed(where: str, what: str) -> None:
            if not quiet:
                self._malformed(where, 0, what, on_malformed)

        for document in documents:
            if not _well_formed(document):
                malformed(str(document.get("_id")), "a document without its fields")
                continue
            part_id = _part_id(document)
            if current is not None and current.id != part_id:
                malformed(current.id, "a part with chunks missing")
                current = None
            if part_id == skipping:
                continue
            skipping = None
            if document["chunks"] > self.max_chunks:
                malformed(part_id, f"a part of {document['chunks']:,} chunks (more than its size can need)")
                skipping, current = part_id, None
                continue
            if current is None:
                if document["chunk"] != 0:
                    malformed(part_id, "a chunk out of place")
                    continue
                if document["bytes"] > self.max_part_bytes:
                    malformed(part_id, f"a part of {document['bytes']:,} bytes (more than the limit)")
                    skipping = part_id
                    continue
                current = _Inflating(part_id, document)
            elif document["chunk"] != current.next or document["chunks"] != current.chunks:
                malformed(part_id, "a chunk out of place")
                skipping, current = part_id, None
                continue
            problem = current.feed(document["data"])
            if problem is not None:
                malformed(part_id, problem)
                skipping, current = part_id, None
                continue
            if current.next == current.chunks:
                done, current = current, None
                problem = done.finish()
                if problem is not None:
                    malformed(part_id, problem)
                    continue
                yield done.part()
        if current is not None:
            malformed(current.id, "a part with chunks missing")

    def _entries(
        self, part: _Part, on_malformed: OnMalformed | None, quiet: bool = False
    ) -> list[tuple[Key, dict[str, Any]]]:
        """The part's records with their keys (received µs, part id, index), in key order."""
        entries = []
        report = None if quiet else on_malformed
        for index, line in enumerate(part.data.split(b"\n")[:-1]):
            at = f"event log part {part.id} line {index}"
            record = stored_object(line, part.id, index, report, at=at) if not quiet else _quiet_object(line)
            if record is None:
                continue
            received = record.get("received")
            if not isinstance(received, (int, float)) or isinstance(received, bool) or not math.isfinite(received):
                if not quiet:
                    self._malformed(part.id, index, "a record without its receive time", on_malformed)
                continue
            entries.append(((max(0, micros(received)), part.id, index), record))
        entries.sort(key=lambda entry: entry[0])
        return entries

    @staticmethod
    def _malformed(where: str, index: int, what: str, on_malformed: OnMalformed | None) -> None:
        log.warning("event log %s: %s; skipped", where, what)
        if on_malformed is not None:
            on_malformed(where, index)

    # -- retention -------------------------------------------------------------------------

    def remove_older(self, older_than: float) -> int:
        """Delete the documents whose last event was received before the unix time ``older_than``;
        returns how many (a concurrent run may have deleted some of them first)."""
        return self._ready().delete_many({"last": {"$lt": micros(older_than)}}).deleted_count


class _Inflating:
    """A part whose chunks are being inflated as they come, never past its declared size."""

    def __init__(self, part_id: str, document: dict[str, Any]) -> None:
        self.id = part_id
        self.first: int = document["first"]
        written = document.get("written")
        self.written = float(written) if isinstance(written, (int, float)) and not isinstance(written, bool) else 0.0
        self.batch: str = document["batch"]
        self.number: int = document["part"]
        self.declared: int = document["bytes"]
        self.chunks: int = document["chunks"]
        self.next = 0
        self.inflate = zlib.decompressobj()
        self.out: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> str | None:
        """Inflate one more chunk; what is wrong with the stream, if anything."""
        self.next += 1
        try:
            piece = self.inflate.decompress(data, self.declared + 1 - self.size)
        except zlib.error as error:
            return f"a broken zlib stream ({error})"
        self.size += len(piece)
        self.out.append(piece)
        if self.size > self.declared:
            return "a zlib stream of another length than its part's"
        return None

    def finish(self) -> str | None:
        """After the last chunk: what is wrong with the whole stream, if anything."""
        if self.size != self.declared or not self.inflate.eof:
            return "a zlib stream of another length than its part's"
        return None

    def part(self) -> _Part:
        return _Part(self.id, self.first, self.written, b"".join(self.out), self.batch, self.number)


def compress(data: bytes) -> bytes:
    """``data`` as a zlib stream (level ``LEVEL``), as the documents hold it; any zlib reads it back."""
    return _deflate(data, LEVEL)


def _cut(lines: Sequence[str], limit: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of runs of lines of at most ``limit`` characters (a longer line alone)."""
    start, size = 0, 0
    for index, line in enumerate(lines):
        if size and size + len(line) > limit:
            yield start, index
            start, size = index, 0
        size += len(line)
    yield start, len(lines)


def _quiet_object(line: bytes) -> dict[str, Any] | None:
    """A line's JSON object, or None (without a warning: a part read again was reported before)."""
    return json_object(line)


def _part_id(document: dict[str, Any]) -> str:
    return f"{document['batch']}.{document['part']:04d}"


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _well_formed(document: dict[str, Any]) -> bool:
    """Whether a document has the fields a reader relies on, of the right types."""
    return (
        isinstance(document.get("batch"), str)
        and all(_integer(document.get(name)) for name in ("part", "chunk", "chunks", "first", "bytes"))
        and document["chunk"] < document["chunks"]
        and isinstance(document.get("data"), bytes)
    )


def _position_key(position: Position) -> tuple[Key, float | None]:
    """The (received µs, part id, index) a position of this log stands for, and the snapshot it was
    read in (server seconds; None for a position that does not say); ``ValueError`` if not one."""
    stamp, slash, rest = position.segment.partition("/")
    part, at, snapshot = rest.rpartition("@")
    if not (at and snapshot.isdigit()):
        part, snapshot = rest, ""
    if not (slash and stamp.isdigit() and part):
        raise ValueError(f"not a position in the MongoDB event log: {position}")
    return (int(stamp), part, position.offset), (int(snapshot) / 1000 if snapshot else None)
