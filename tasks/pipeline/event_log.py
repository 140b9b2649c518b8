"""The local event log (``INSIGHTS_EVENT_LOG=local``): every accepted event, appended to JSON-lines
segment files on the batcher's host. The default log lives in MongoDB (``tasks.pipeline.mongo_log``),
shared by every host; ``tasks.pipeline.event_logs`` chooses. Both keep the same lines.

The batcher appends each batch it accepts (``append``); ``read`` walks the log back in order
(for replays and audits); ``prune`` applies retention. One line per event::

    {"id":"<event id>","received":1764081912.5,"sender":"<token name>","event":{...the raw event...}}

``id`` is the event's id as handlers saw it (``tasks.authoring.event_ids``), ``sender`` the API token
that posted it (absent for the anonymous scope): a replay of the log passes both on, so
replayed events get the same ids.

Segments are named ``events-<UTC yyyymmddTHHMMSS.ffffff>Z-p<pid>-<seq>.jsonl`` so that names
sort chronologically. A writer only ever appends to a segment it created itself (exclusive
create; the pid and a per-process sequence number keep names apart), so several processes —
or several ``EventLog`` objects — can write into one directory without locking.

Durability: ``append`` issues one ``write()`` per batch straight to the file (no user-space
buffer, hence nothing to flush) but does not fsync: until a batch is dispatched, the Redis
intake stream is its durable copy. A crash in the middle of a write can leave a torn last
line; readers skip it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import json.encoder
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.pipeline.parsing import OnMalformed, stored_object

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "events-"
SEGMENT_SUFFIX = ".jsonl"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

# One sequence for every EventLog of this process, so two logs on one directory never pick the same name.
_sequence = itertools.count(1)


@dataclass(frozen=True, order=True)
class Position:
    """Where a reader is: a segment's file name and the byte offset of the next line in it.

    Replay sources reuse the type: for tracking-log files ``segment`` is the file's path and
    ``offset`` a line number (see ``tasks.pipeline.replay``).
    """

    segment: str
    offset: int

    def to_json(self) -> dict[str, Any]:
        """The position as a JSON-able dict (for checkpoints)."""
        return {"segment": self.segment, "offset": self.offset}

    @classmethod
    def from_json(cls, data: Any) -> Position:
        """The position ``to_json`` wrote; ``ValueError`` if ``data`` is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("segment"), str):
            raise ValueError(f"not a position: {data!r}")
        offset = data.get("offset")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"not a position: {data!r}")
        return cls(data["segment"], offset)


def _json_encoder() -> Callable[[Any], str]:
    """A compact, ASCII-only JSON encoder; the C encoder called directly where available (the hot path)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            # markers=None: no circular-reference check (events come from JSON); default=str for odd types.
            c_encode = make(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
            if "".join(c_encode({"a": [1, 2.5, None]}, 0)) == '{"a":[1,2.5,null]}':
                return lambda obj: "".join(c_encode(obj, 0))
        except TypeError:  # a Python whose C encoder takes other arguments
            pass
    return json.JSONEncoder(separators=(",", ":"), check_circular=False, default=str).encode


_encode = _json_encoder()
encode_event = _encode  # an event as compact ASCII JSON, as the log's lines hold it
_encode_string = json.encoder.encode_basestring_ascii

#: One event as the batcher hands it to the log: (event id, received unix time, event as ASCII JSON, sender or None).
EncodedRecord = tuple[str, float, str, "str | None"]


def encode_lines(records: Sequence[EncodedRecord]) -> list[str]:
    """The log's JSON line of each record (``{"id":…,"received":…,"sender":…,"event":…}`` and a newline)."""
    encode_string = _encode_string
    stamps: dict[float, str] = {}  # a batch's events mostly share one receipt time; float repr is slow
    lines = []
    for event_id, received, event_json, sender in records:
        stamp = stamps.get(received)
        if stamp is None:
            stamp = stamps[received] = repr(float(received))
        scope = "" if sender is None else f',"sender":{encode_string(sender)}'
        lines.append(f'{{"id":{encode_string(str(event_id))},"received":{stamp}{scope},"event":{event_json}}}\n')
    return lines


class EventLog:
    """An append-only log of accepted events in JSON-lines segment files under ``directory``."""

    def __init__(self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._path: Path | None = None
        self._size = 0

    # -- writing ---------------------------------------------------------------------------

    def append(
        self, records: Sequence[tuple[str, float, dict[str, Any]]], sender: str | None = None, batch: str | None = None
    ) -> None:
        """Append ``(event id, received unix time, raw event)`` records of one sender: one line each, one write.

        Rotates to a new segment first when the current one holds data and this batch would take
        it past ``segment_bytes`` (a single larger batch still goes whole into one segment).
        """
        encoded = [(event_id, received, _encode(event), sender) for event_id, received, event in records]
        self.append_encoded(encoded, batch)

    def append_encoded(self, records: Sequence[EncodedRecord], batch: str | None = None) -> None:
        """Like ``append``, for ``(id, received, event as (ASCII) JSON text, sender or None)`` records.

        ``batch`` (the batch id) is not kept: a segment's lines are in the order they were appended.
        """
        if not records:
            return
        data = "".join(encode_lines(records)).encode("ascii")
        with self._lock:
            fd = self._writable(len(data))
            try:
                self._write_all(fd, data)
            except BaseException:
                self._abandon_torn_segment()
                raise
            self._size += len(data)

    @property
    def current_segment(self) -> Path | None:
        """The segment this object is writing to, if any."""
        return self._path

    def close(self) -> None:
        """Close the current segment; a later ``append`` starts a new one."""
        with self._lock:
            self._close_segment()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _writable(self, size: int) -> int:
        """The descriptor to write ``size`` bytes to, opening or rotating the segment as needed."""
        fd = self._fd
        if fd is not None and self._pid == os.getpid():
            full = self._size > 0 and self._size + size > self.segment_bytes
            if not full and os.fstat(fd).st_nlink > 0:  # nlink 0: pruned under us by another process
                return fd
        self._close_segment()
        return self._open_segment()

    def _open_segment(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        while True:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
            name = f"{SEGMENT_PREFIX}{stamp}Z-p{pid:07d}-{next(_sequence):06d}{SEGMENT_SUFFIX}"
            path = self.directory / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
            except FileExistsError:
                continue
            self._fd, self._pid, self._path, self._size = fd, pid, path, 0
            return fd

    def _close_segment(self) -> None:
        fd, self._fd, self._path, self._size = self._fd, None, None, 0
        if fd is not None:
            os.close(fd)  # in a forked child this closes only the child's copy

    def _abandon_torn_segment(self) -> None:
        """After a failed write: cut the partial batch off if possible, and never write to that segment again."""
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):  # if it fails, readers skip the torn last line
                os.ftruncate(self._fd, self._size)
        self._close_segment()

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:  # one write() for a regular file; the loop only covers short writes
            written = os.write(fd, view)
            view = view[written:]

    # -- reading ---------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Every segment file, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"), key=lambda path: path.name)

    @property
    def description(self) -> str:
        """What a replay checkpoint records to make sure it resumes the same log."""
        return f"eventlog:{self.directory.absolute()}"

    def read(
        self,
        start: Position | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        on_malformed: OnMalformed | None = None,
    ) -> Iterator[tuple[Position, dict[str, Any]]]:
        """Yield ``(position after the record, record)`` in order, from ``start`` (or the beginning).

        ``since`` / ``until``: only records received then (unix times, inclusive); the segments
        are read through all the same (they are not indexed by time).

        A snapshot: only what the segments held when reading began is yielded, so events that
        are appended meanwhile (e.g. fed back in by a replay of this very log) are not read
        again. An incomplete last line (a torn write, or one still being written) is skipped;
        a complete line that is not a JSON object is logged, reported to ``on_malformed(segment,
        offset)`` and skipped. A ``start`` whose segment has been pruned continues with the
        next segment.
        """
        segments = self.segments()
        sizes = {}
        for path in segments:
            with contextlib.suppress(FileNotFoundError):  # pruned just now
                sizes[path] = path.stat().st_size
        if start is not None and start.segment not in {path.name for path in segments}:
            log.warning("event log segment %s is gone (pruned?); continuing with the next one", start.segment)
        for path, size in sizes.items():
            offset = 0
            if start is not None:
                if path.name < start.segment:
                    continue
                if path.name == start.segment:
                    offset = start.offset
            if offset >= size:
                continue
            records = self._read_segment(path, offset, size, on_malformed)
            if since is None and until is None:
                yield from records
                continue
            for position, record in records:
                received = record.get("received")
                if isinstance(received, (int, float)) and not (
                    (since is not None and received < since) or (until is not None and received > until)
                ):
                    yield position, record

    @staticmethod
    def _read_segment(
        path: Path, offset: int, limit: int, on_malformed: OnMalformed | None
    ) -> Iterator[tuple[Position, dict[str, Any]]]:
        name = path.name
        try:
            file = path.open("rb")
        except FileNotFoundError:
            log.warning("event log segment %s was pruned while being read", name)
            return
        with file:
            file.seek(offset)
            for line in file:
                end = offset + len(line)
                if end > limit or not line.endswith(b"\n"):
                    if end <= limit:
                        log.warning("skipped a torn last line at %s byte %d", name, offset)
                    return
                record = stored_object(line, name, offset, on_malformed, at=f"event log segment {name} byte {offset}")
                if record is not None:
                    yield Position(name, end), record
                offset = end

    # -- retention -------------------------------------------------------------------------

    def remove_older(self, older_than: float) -> int:
        """``prune``, counting the segments deleted (the interface the MongoDB log shares)."""
        return len(self.prune(older_than))

    def prune(self, older_than: float) -> list[Path]:
        """Delete the segments last modified before the unix time ``older_than``; returns them.

        Never the segment this object is writing to. Another process whose idle segment is
        deleted notices on its next append and starts a new segment.
        """
        removed = []
        for path in self.segments():
            if path == self._path:
                continue
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # pruned concurrently
                pass
        return removed
