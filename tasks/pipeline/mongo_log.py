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

Order. Reading merges the parts into one sequence by (receive time, part id, place in the part):
events are read in the order they were received (the intake stream's clock, one for every host),
whichever batcher logged them; events received in the same microsecond follow by batch id, then
in the order their batch holds them. A ``Position`` is where the last event read stands:
``Position("<received µs, 17 digits>/<part id>", <index in the part>)``; reading from it yields
the events after it. Reading is a snapshot: parts written after it began are not read.

Retention deletes the documents whose ``last`` is older than the cut-off: one ``delete_many``,
idempotent, so two runs at once are harmless.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bson import Binary
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tasks.pipeline.event_log import EncodedRecord, Position, encode_event, encode_lines
from tasks.pipeline.parsing import OnMalformed, stored_object

try:  # ISA-L: the same zlib streams, made ~6x faster than by zlib itself
    from isal.isal_zlib import compress as _deflate
except ImportError:  # pragma: no cover - isal is in requirements.txt
    _deflate = zlib.compress

log = logging.getLogger(__name__)

COLLECTION = "batches"
PART_BYTES = 4 * 1024 * 1024  # JSON lines per part (a single larger line goes alone)
CHUNK_BYTES = 8 * 1024 * 1024  # compressed bytes per document: half of MongoDB's 16 MB cap
DEFAULT_MAX_PART_BYTES = 64 * 1024 * 1024  # a part claiming more (uncompressed) is refused when read
LEVEL = 1  # JSON lines shrink 5-10x at level 1 (ISA-L's or zlib's); higher levels cost the batcher more CPU
DUPLICATE_KEY = 11000
MICROS = 1_000_000


def micros(unix_time: float) -> int:
    """A unix time in integer microseconds, as the documents keep times."""
    return round(unix_time * MICROS)


@dataclass(frozen=True)
class _Part:
    """One part read back: its id, the receive time of its first event (µs) and its lines."""

    id: str
    first: int
    data: bytes


class MongoEventLog:
    """The event log as documents of ``database.batches``; see the module docstring."""

    def __init__(
        self,
        database: Database[dict[str, Any]],
        *,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        close_client: bool = False,
    ) -> None:
        self.database = database
        self.collection: Collection[dict[str, Any]] = database[COLLECTION]
        self.max_part_bytes = max(max_part_bytes, PART_BYTES)
        self._close_client = close_client
        self._indexed = False

    @property
    def description(self) -> str:
        """What a replay checkpoint records to make sure it resumes the same log."""
        return f"eventlog:mongodb:{self.database.name}.{COLLECTION}"

    # -- writing ---------------------------------------------------------------------------

    def append_encoded(self, records: Sequence[EncodedRecord], batch: str | None = None) -> None:
        """Store ``(id, received, event as ASCII JSON, sender or None)`` records of one batch
        (``batch``: its id; a new one if None) as one document per part and chunk."""
        if not records:
            return
        batch = batch or uuid.uuid4().hex
        lines = encode_lines(records)
        written = time.time()
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
                        "written": written,
                        "data": Binary(chunk),
                    }
                )
        self._insert(documents)

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
        after ``start``, of the events received from ``since`` to ``until`` (unix times, inclusive).

        A document, chunk or line that cannot be read (bad fields, a broken or oversized zlib
        stream, a line that is not a JSON object with a numeric ``received``) is logged, reported
        to ``on_malformed(part or document id, line index or 0)`` and skipped.
        """
        after = _position_key(start) if start is not None else None
        low = max(micros(since) if since is not None else 0, after[0] if after is not None else 0)
        high = micros(until) if until is not None else None
        query: dict[str, Any] = {"written": {"$lte": time.time()}}
        if low:
            query["last"] = {"$gte": low}
        if high is not None:
            query["first"] = {"$lte": high}
        cursor = self._ready().find(query).sort([("first", 1), ("_id", 1)]).batch_size(16)
        parts = self._parts(cursor, on_malformed)
        counter = itertools.count()
        heap: list[tuple[tuple[int, str, int], int, dict[str, Any], Iterator[Any]]] = []
        upcoming = next(parts, None)
        while heap or upcoming is not None:
            # Open every part that may hold the smallest event not yet read: those that begin by then.
            while upcoming is not None and (not heap or upcoming.first <= heap[0][0][0]):
                entries = self._entries(upcoming, on_malformed)
                first = next(entries, None)
                if first is not None:
                    heapq.heappush(heap, (first[0], next(counter), first[1], entries))
                upcoming = next(parts, None)
            if not heap:
                continue
            key, _, record, entries = heapq.heappop(heap)
            following = next(entries, None)
            if following is not None:
                heapq.heappush(heap, (following[0], next(counter), following[1], entries))
            if (after is not None and key <= after) or key[0] < low or (high is not None and key[0] > high):
                continue
            yield Position(f"{key[0]:017d}/{key[1]}", key[2]), record

    def _parts(self, documents: Iterator[dict[str, Any]], on_malformed: OnMalformed | None) -> Iterator[_Part]:
        """The parts the documents hold (a part's chunks are adjacent in ``(first, _id)`` order)."""
        pending: list[dict[str, Any]] = []
        for document in documents:
            if not _well_formed(document):
                self._malformed(str(document.get("_id")), 0, "a document without its fields", on_malformed)
                continue
            part_id = f"{document['batch']}.{document['part']:04d}"
            if pending and (pending[0]["batch"], pending[0]["part"]) != (document["batch"], document["part"]):
                self._malformed(_part_id(pending[0]), 0, "a part with chunks missing", on_malformed)
                pending = []
            if document["chunk"] != len(pending):
                self._malformed(part_id, 0, "a chunk out of place", on_malformed)
                pending = []
                continue
            pending.append(document)
            if len(pending) == document["chunks"]:
                data = self._decompress(pending, on_malformed)
                if data is not None:
                    yield _Part(part_id, pending[0]["first"], data)
                pending = []
        if pending:
            self._malformed(_part_id(pending[0]), 0, "a part with chunks missing", on_malformed)

    def _decompress(self, chunks: list[dict[str, Any]], on_malformed: OnMalformed | None) -> bytes | None:
        """The part's lines, or None if the stream is broken or larger than it says (at most ``max_part_bytes``)."""
        declared = chunks[0]["bytes"]
        part_id = _part_id(chunks[0])
        if declared > self.max_part_bytes:
            self._malformed(part_id, 0, f"a part of {declared:,} bytes (more than the limit)", on_malformed)
            return None
        inflate = zlib.decompressobj()
        out = []
        size = 0
        try:
            for chunk in chunks:
                piece = inflate.decompress(chunk["data"], declared + 1 - size)
                size += len(piece)
                out.append(piece)
                if size > declared:
                    break
        except zlib.error as error:
            self._malformed(part_id, 0, f"a broken zlib stream ({error})", on_malformed)
            return None
        if size != declared or not inflate.eof:
            self._malformed(part_id, 0, "a zlib stream of another length than its part's", on_malformed)
            return None
        return b"".join(out)

    def _entries(
        self, part: _Part, on_malformed: OnMalformed | None
    ) -> Iterator[tuple[tuple[int, str, int], dict[str, Any]]]:
        """The part's records with their keys (received µs, part id, index), in key order."""
        entries = []
        for index, line in enumerate(part.data.split(b"\n")[:-1]):
            record = stored_object(line, part.id, index, on_malformed, at=f"event log part {part.id} line {index}")
            if record is None:
                continue
            received = record.get("received")
            if not isinstance(received, (int, float)) or isinstance(received, bool) or not math.isfinite(received):
                self._malformed(part.id, index, "a record without its receive time", on_malformed)
                continue
            entries.append(((max(0, micros(received)), part.id, index), record))
        entries.sort(key=lambda entry: entry[0])
        return iter(entries)

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


def _position_key(position: Position) -> tuple[int, str, int]:
    """The (received µs, part id, index) a position of this log stands for; ``ValueError`` if not one."""
    stamp, slash, part = position.segment.partition("/")
    if not (slash and stamp.isdigit() and part):
        raise ValueError(f"not a position in the MongoDB event log: {position}")
    return int(stamp), part, position.offset
