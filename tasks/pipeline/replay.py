"""Replay: feed stored events back through the pipeline, resumably.

Sources are callables ``source(start) -> iterator of (position after the event, event)``, or
of ``(position, event, Recorded(id, sender))`` when the source knows the event's id and sender:
``TrackingLogs`` reads the Open edX LMS's tracking-log files, ``EventLogSource`` the stored
event log (which records both). ``replay`` submits their events in chunks to the intake
stream (to every handler, or only to ``targets``), optionally rate-limited, with a progress
bar and a checkpoint file that lets an interrupted replay continue where it stopped.

Replays are safe to repeat: the batcher skips an event that a target handler has already
handled (same ``tasks.authoring.event_ids.event_id``), so sending an event twice changes nothing;
each chunk's receipt counts, per handler, the events handed to it and those skipped
(``report``, printed by the command). To hand already-handled events to a fixed handler again, a
replay with ``reprocess`` is a new handling *generation*: the batcher claims each event for the
generation's own token of every target handler (``tasks.pipeline.dedupe.generation_token``), so
the handlers get every event once per reprocess run (a resumed run keeps its generation). A
replay therefore gives every event its id itself: the one the event log recorded, else the
id ``event_id`` derives in the replay's sender scope (an event without an id or a time is
identified by its content here, as a replay is a re-send).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import itertools
import json
import logging
import math
import os
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import redis
from pymongo.errors import PyMongoError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from config.settings import Settings
from tasks.authoring.event_ids import event_id
from tasks.errors import InsightsError
from tasks.pipeline.event_log import Position
from tasks.pipeline.event_logs import EventLogBackend, open_event_log
from tasks.pipeline.parsing import OnMalformed, stored_object
from tasks.pipeline.stream import Intake
from tasks.storage.connections import redis_of
from tasks.storage.keys import Keys

log = logging.getLogger(__name__)


class Recorded(NamedTuple):
    """What the event log recorded with an event: its id and its sender (None: the anonymous scope)."""

    id: str
    sender: str | None


Item = tuple[Position, dict[str, Any]] | tuple[Position, dict[str, Any], Recorded]
Source = Callable[[Position | None], Iterator[Item]]

CHECKPOINT_VERSION = 1
_GZIP_MAGIC = b"\x1f\x8b"


# -- sources -----------------------------------------------------------------------------------


def read_tracking_logs(
    paths: Sequence[Path], start: Position | None = None, *, on_malformed: OnMalformed | None = None
) -> Iterator[tuple[Position, dict[str, Any]]]:
    """Yield the events of Open edX tracking-log files (one JSON object per line), in the order given.

    Gzipped files (``tracking.log-20261101.gz``) are recognized by their content and read
    transparently. Blank lines are skipped; a line that is not a JSON object is logged as
    ``file:line``, reported to ``on_malformed(file, line)`` and skipped; a truncated or corrupt
    gzip stream ends its file the same way.

    Positions are ``Position(str(path), n)``: ``n`` is the 1-based LINE NUMBER of the event's
    line in the (decompressed) file, i.e. the number of lines consumed. ``start`` continues
    after that line: files before ``start.segment`` and its first ``start.offset`` lines are
    skipped (``ValueError`` if ``start.segment`` is not one of ``paths``).
    """
    files = [Path(path) for path in paths]
    skip = 0
    if start is not None:
        names = [str(path) for path in files]
        if start.segment not in names:
            raise ValueError(f"cannot resume at {start.segment!r}: not one of the files to replay")
        files = files[names.index(start.segment) :]
        skip = start.offset
    for path in files:
        yield from _read_tracking_log(path, skip, on_malformed)
        skip = 0


def _read_tracking_log(
    path: Path, skip: int, on_malformed: OnMalformed | None
) -> Iterator[tuple[Position, dict[str, Any]]]:
    name = str(path)
    number = skip
    with path.open("rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
        try:
            for line in itertools.islice(stream, skip, None):
                number += 1
                if not line.strip():
                    continue
                event = stored_object(line, name, number, on_malformed)
                if event is not None:
                    yield Position(name, number), event
        except (EOFError, OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            log.error("%s:%d: unreadable from here on (%s); rest of the file skipped", name, number + 1, error)
            if on_malformed is not None:
                on_malformed(name, number + 1)
        finally:
            if compressed:
                stream.close()


def read_event_log(
    log: EventLogBackend,
    start: Position | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    on_malformed: OnMalformed | None = None,
) -> Iterator[Item]:
    """Yield ``(position, raw event, Recorded(id, sender))`` of the stored event log (of the events
    received from ``since`` to ``until``, unix times, when given).

    A snapshot: events appended while this runs (e.g. the ones the replay itself feeds back)
    are not read. Records without an event object are reported like malformed lines; a
    record without a usable id yields ``(position, raw event)`` (its id is derived again).
    """
    for position, record in log.read(start, since=since, until=until, on_malformed=on_malformed):
        event, recorded_id, sender = record.get("event"), record.get("id"), record.get("sender")
        if not isinstance(event, dict):
            if on_malformed is not None:
                on_malformed(position.segment, position.offset)
        elif isinstance(recorded_id, str) and recorded_id and (sender is None or isinstance(sender, str)):
            yield position, event, Recorded(recorded_id, sender)
        else:
            yield position, event


class TrackingLogs:
    """A replay source over tracking-log files; counts malformed lines in ``skipped_malformed``."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(Path(path).absolute() for path in paths)
        self.skipped_malformed = 0

    @property
    def description(self) -> str:
        """What a checkpoint records to make sure it resumes the same files."""
        return "tracking-logs:" + json.dumps([str(path) for path in self.paths])

    def __call__(self, start: Position | None = None) -> Iterator[tuple[Position, dict[str, Any]]]:
        return read_tracking_logs(self.paths, start, on_malformed=self._malformed)

    def _malformed(self, segment: str, offset: int) -> None:
        self.skipped_malformed += 1


class EventLogSource:
    """A replay source over the stored event log; counts malformed lines in ``skipped_malformed``."""

    def __init__(self, log: EventLogBackend, since: float | None = None, until: float | None = None) -> None:
        self.log = log
        self.since = since
        self.until = until
        self.skipped_malformed = 0

    @property
    def description(self) -> str:
        """What a checkpoint records to make sure it resumes the same log (and time range)."""
        if self.since is None and self.until is None:
            return self.log.description
        since, until = ("-" if bound is None else repr(bound) for bound in (self.since, self.until))
        return f"{self.log.description} received {since} to {until}"

    def __call__(self, start: Position | None = None) -> Iterator[Item]:
        return read_event_log(self.log, start, since=self.since, until=self.until, on_malformed=self._malformed)

    def _malformed(self, segment: str, offset: int) -> None:
        self.skipped_malformed += 1


def source_description(source: Source) -> str:
    """A source's ``description`` attribute, else its qualified name (pass ``description=`` to ``replay`` then)."""
    description = getattr(source, "description", None)
    if isinstance(description, str):
        return description
    func = getattr(source, "func", source)  # functools.partial
    module = getattr(func, "__module__", type(func).__module__)
    return f"{module}.{getattr(func, '__qualname__', type(func).__qualname__)}"


# -- replay ------------------------------------------------------------------------------------


@dataclass
class ReplayStats:
    """What one ``replay`` call did (counts are of this call only, not of earlier resumed runs)."""

    events: int
    chunks: int
    skipped_malformed: int
    seconds: float
    resumed_from: Position | None
    receipts: list[str] = field(default_factory=list)  # the intake receipts of the chunks submitted
    generation: str | None = None  # a reprocess's handling generation


class CheckpointError(ValueError):
    """The checkpoint file belongs to another replay, or cannot be read."""


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``replay``; the checkpoint (if any) holds the position to resume from."""

    def __init__(self, stats: ReplayStats, checkpoint: Path | None) -> None:
        super().__init__("replay interrupted")
        self.stats = stats
        self.checkpoint = checkpoint


def replay(
    intake: Intake,
    source: Source,
    *,
    targets: Sequence[str] = (),
    rate: float | None = None,
    chunk_size: int = 500,
    checkpoint: Path | None = None,
    progress: bool = True,
    total: int | None = None,
    description: str | None = None,
    sender: str | None = None,
    reprocess: bool = False,
) -> ReplayStats:
    """Submit every event of ``source`` to ``intake`` in chunks; returns what was done.

    ``targets``: handler task names to deliver to (empty: every handler). ``rate``: at most
    that many events per second, paced on the monotonic clock (a token bucket; the process
    sleeps, it does not spin); with a rate a chunk holds at most one second's worth of events,
    so the flow stays smooth. ``progress``: a tqdm bar on stderr (events, events/s, of
    ``total`` when known). ``sender``: the API token name whose scope events are replayed in
    when the source does not record one (tracking-log files; None: the anonymous scope); a
    chunk holds events of one sender only. ``reprocess``: hand the events to the target handlers
    (every handler without ``targets``) even if they had them, once per run: the run's handling
    generation is new (kept in the checkpoint, so a resumed run goes on with it).

    ``checkpoint``: after each chunk is submitted, the position of its last event is written
    to this file (JSON, replaced atomically), along with the source ``description`` (default:
    ``source_description(source)``), the targets, the sender and the generation. If the file exists
    when the replay starts, the replay continues from its position, or raises ``CheckpointError`` (a
    ``ValueError``) if it describes another source, other targets, another sender, or a reprocess
    when this is none (or the other way round). The file
    is deleted once the source is exhausted. An interruption at any point leaves the last
    checkpoint valid: Ctrl-C raises ``ReplayInterrupted`` (a ``KeyboardInterrupt`` carrying
    the stats), other errors propagate as they are. Because a chunk is submitted before its
    checkpoint is written, a crash between the two makes the resumed replay send that one
    chunk again; the batcher drops events a handler has already handled, so that repeat is
    harmless.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of events per second, got {rate}")
    wanted = sorted(set(targets))
    description = description or source_description(source)
    start, done_before = None, 0
    generation = uuid.uuid4().hex[:12] if reprocess else None
    if checkpoint is not None and checkpoint.exists():
        start, done_before, generation = _resume_point(checkpoint, description, wanted, sender, reprocess)
        log.info("resuming %s after %s (%d events sent before)", description, start, done_before)
    size = chunk_size if rate is None else max(1, min(chunk_size, int(rate)))
    pacer = None if rate is None else _Pacer(rate, burst=size)
    malformed_before = getattr(source, "skipped_malformed", 0)
    began = time.monotonic()
    stats = ReplayStats(
        events=0, chunks=0, skipped_malformed=0, seconds=0.0, resumed_from=start, generation=generation
    )  # fmt: skip

    def finish() -> ReplayStats:
        stats.seconds = time.monotonic() - began
        stats.skipped_malformed = getattr(source, "skipped_malformed", 0) - malformed_before
        return stats

    def send(chunk: list[dict[str, Any]], ids: list[str], scope: str | None, position: Position) -> None:
        if pacer is not None:
            pacer.wait(len(chunk))
        receipt = intake.submit(chunk, wanted, sender=scope, ids=ids, tally=True, generation=generation)
        stats.receipts.append(receipt)
        stats.events += len(chunk)
        stats.chunks += 1
        if checkpoint is not None:
            done = done_before + stats.events
            _write_checkpoint(checkpoint, description, wanted, sender, position, done, generation)
        bar.update(len(chunk))

    bar = tqdm(
        total=total, initial=done_before, desc="replay", unit="ev",
        file=sys.stderr, disable=not progress, dynamic_ncols=True,
    )  # fmt: skip
    redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
    try:
        with bar, redirect:
            chunk: list[dict[str, Any]] = []
            ids: list[str] = []
            scope, last = sender, start
            for item in source(start):
                event = item[1]
                recorded = item[2] if len(item) == 3 else None
                owner = recorded.sender if recorded is not None else sender
                if chunk and owner != scope and last is not None:
                    send(chunk, ids, scope, last)
                    chunk, ids = [], []
                scope, last = owner, item[0]
                chunk.append(event)
                ids.append(recorded.id if recorded is not None else event_id(event, sender=owner))
                if len(chunk) >= size:
                    send(chunk, ids, scope, last)
                    chunk, ids = [], []
            if chunk and last is not None:
                send(chunk, ids, scope, last)
    except KeyboardInterrupt:
        raise ReplayInterrupted(finish(), checkpoint) from None
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return finish()


class _Pacer:
    """Token bucket: ``rate`` tokens a second, at most ``burst`` saved up; starts empty."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = 0.0
        self.last = time.monotonic()

    def wait(self, n: int) -> None:
        """Sleep until ``n`` events may go, then spend them."""
        while True:
            now = time.monotonic()
            self.tokens = min(max(self.burst, n), self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= n:
                self.tokens -= n
                return
            time.sleep((n - self.tokens) / self.rate)


def _resume_point(
    checkpoint: Path, description: str, targets: list[str], sender: str | None, reprocess: bool
) -> tuple[Position, int, str | None]:
    """Where a checkpointed replay goes on: its position, the events it sent, its generation."""
    try:
        state = json.loads(checkpoint.read_text())
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"unknown version {state.get('version')!r}")
        position = Position.from_json(state["position"])
        done = int(state.get("events", 0))
        theirs = (state["source"], sorted(state["targets"]), state.get("sender"))
        generation = state.get("generation")
        if generation is not None and not isinstance(generation, str):
            raise ValueError(f"a generation that is not a text: {generation!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"cannot read the replay checkpoint {checkpoint} ({error}); delete it to start the replay over"
        ) from None
    if theirs != (description, targets, sender):

        def show(source: str, names: list[str], scope: str | None) -> str:
            return f"{source} to {', '.join(names) or 'every handler'}" + (f" as {scope}" if scope else "")

        raise CheckpointError(
            f"the checkpoint {checkpoint} belongs to another replay: {show(*theirs)}, "
            f"not {show(description, targets, sender)}. Finish that replay by running it again, "
            "or delete the checkpoint (or use another) to start this one"
        )
    if (generation is not None) != reprocess:
        kind = "a --reprocess" if generation is not None else "a replay without --reprocess"
        raise CheckpointError(
            f"the checkpoint {checkpoint} belongs to {kind} of the same events. Finish it by running it "
            "again as it was, or delete the checkpoint (or use another) to start this one"
        )
    return position, done, generation


def _write_checkpoint(
    path: Path,
    description: str,
    targets: list[str],
    sender: str | None,
    position: Position,
    events: int,
    generation: str | None = None,
) -> None:
    """Replace ``path`` atomically (write a temporary file, then rename; no fsync)."""
    state = {
        "version": CHECKPOINT_VERSION,
        "source": description,
        "targets": targets,
        "sender": sender,
        "position": position.to_json(),
        "events": events,
        "generation": generation,
        "updated": time.time(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(temporary, path)


# -- report ------------------------------------------------------------------------------------


@dataclass
class Report:
    """What the batcher did with a replay's events, from the receipts of its chunks."""

    #: Per handler task: [events handed to it, events skipped as already handled].
    handlers: dict[str, list[int]]
    conflicts: int  # events that differ from the one on record under their id (given to no handler)
    waiting: list[str]  # receipts of chunks the batcher had not dispatched when the wait ended
    seconds: float  # how long the report waited


def report(client: redis.Redis, keys: Keys, receipts: Sequence[str], patience: float, poll: float = 0.2) -> Report:
    """Wait for the batcher to dispatch a replay's chunks and add up their receipts' counts.

    Waits as long as the batcher makes progress on them: it stops once every chunk's receipt is
    linked, or when none was for ``patience`` seconds (then ``waiting`` lists the rest).
    """
    began = time.monotonic()
    handlers: dict[str, list[int]] = {}
    conflicts = 0
    waiting = list(receipts)
    progress = began
    while waiting:
        linked: list[Any] = []
        for at in range(0, len(waiting), 1000):
            part = waiting[at : at + 1000]
            linked.extend(client.mget([keys.receipt(receipt) for receipt in part]))
        still = []
        for receipt, raw in zip(waiting, linked, strict=True):
            if raw is None:
                still.append(receipt)
                continue
            link = json.loads(raw)
            conflicts += int(link.get("conflicts", 0))
            for handler, (handed, skipped) in link.get("handlers", {}).items():
                total = handlers.setdefault(handler, [0, 0])
                total[0] += handed
                total[1] += skipped
        now = time.monotonic()
        if len(still) < len(waiting):
            progress = now
        waiting = still
        if not waiting or now - progress >= patience:
            break
        time.sleep(poll)
    return Report(handlers, conflicts, waiting, time.monotonic() - began)


def describe_report(result: Report, chunks: int, reprocess: bool) -> list[str]:
    """The lines a replay prints about what its handlers got, for people."""
    lines = []
    for handler, (handed, skipped) in sorted(result.handlers.items()):
        lines.append(f"{handler}: {handed + skipped:,} sent, {handed:,} new, {skipped:,} skipped as already handled")
    if result.conflicts:
        lines.append(
            f"{result.conflicts:,} events differ from the event on record under their id: given to no handler "
            "(python -m tasks conflicts list)"
        )
    if result.waiting:
        lines.append(
            f"the batcher has not yet dispatched {len(result.waiting):,} of the {chunks:,} chunks "
            f"(waited {result.seconds:.0f} s without progress): the counts above leave them out. "
            f"See each chunk's receipt with GET /receipt/<receipt> (the first {result.waiting[0]}, "
            f"the last {result.waiting[-1]}), or wait longer with --wait SECONDS"
        )
    idle = [handler for handler, (handed, skipped) in sorted(result.handlers.items()) if skipped and not handed]
    if idle and not reprocess:
        lines.append(
            f"every event was skipped as already handled by {', '.join(idle)}: "
            "use --reprocess to hand them to the handler again"
        )
    return lines


# -- command line ------------------------------------------------------------------------------


def replay_main(
    argv: list[str],
    settings: Settings,
    resolve_handlers: Callable[[list[str]], list[str]] = lambda names: names,
    *,
    stream: str | None = None,
) -> int:
    """``insights replay``; ``argv`` are the arguments after ``replay``.

    ``resolve_handlers`` turns the ``--handlers`` names into handler task names (it may raise
    ``UnknownName``, ``ValueError`` or ``LookupError``: exit 2); ``stream`` is the intake stream
    (default: the deployment's).

    Once the events are sent it waits (``--wait``) for the batcher to dispatch them and prints,
    per handler, the events sent, handed to it (new) and skipped as already handled.

    Returns 0 when the replay finished, 1 when it was interrupted or failed (the checkpoint
    is kept: run the same command again to continue), 2 for bad arguments or a checkpoint
    that belongs to another replay.
    """
    parser = argparse.ArgumentParser(
        prog="insights replay",
        description=(
            "Feed events back through the pipeline: tracking-log files, or the stored event log. Events a "
            "handler already had are skipped (the report says how many, per handler); --reprocess hands "
            "them to the --handlers again, to backfill a fixed module."
        ),
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="tracking-log files (.gz too), in order")
    parser.add_argument("--log", action="store_true", help="replay the stored event log instead of files")
    parser.add_argument("--handlers", default="", metavar="NAME,NAME", help="deliver only to these handlers")
    parser.add_argument(
        "--reprocess", action="store_true",
        help="hand the events to the --handlers even if they had them (once per run: a new handling "
        "generation; the handlers must be idempotent by evt.id); needs --handlers, or --all-handlers",
    )  # fmt: skip
    parser.add_argument(
        "--all-handlers", action="store_true", help="with --reprocess and no --handlers: re-run every handler"
    )
    parser.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS",
        help="after sending, wait for the batcher while it makes progress, up to SECONDS without any, "
        "to report per handler what was handled and skipped (60; 0: do not wait)",
    )  # fmt: skip
    for bound, which in (("--since", "from"), ("--until", "up to")):
        parser.add_argument(
            bound, type=_moment, metavar="TIME",
            help=f"--log: only the events received {which} TIME (ISO 8601, UTC unless it says; or unix seconds)",
        )  # fmt: skip
    parser.add_argument(
        "--sender", metavar="TOKEN", help="dedupe tracking-log events in this API token's scope (default: anonymous)"
    )
    parser.add_argument("--rate", type=float, metavar="N", help="at most N events per second")
    parser.add_argument("--chunk", type=int, default=500, metavar="N", help="events per submitted chunk (500)")
    parser.add_argument(
        "--checkpoint", type=Path, metavar="PATH", help="resume file (default: $INSIGHTS_DATA_DIR/replay.checkpoint)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
        if args.log == bool(args.files):
            parser.error("give either --log or tracking-log FILEs")
        if (args.since is not None or args.until is not None) and not args.log:
            parser.error("--since and --until select events of the stored log (--log)")
        if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
            parser.error("--rate must be a positive number")
        if args.chunk < 1:
            parser.error("--chunk must be at least 1")
        if not (math.isfinite(args.wait) and args.wait >= 0):
            parser.error("--wait must be a number of seconds, 0 or more")
        if args.all_handlers and (not args.reprocess or args.handlers.strip()):
            parser.error("--all-handlers goes with --reprocess and without --handlers")
        if args.reprocess and not args.handlers.strip() and not args.all_handlers:
            parser.error(
                "--reprocess needs --handlers NAME,NAME (the handlers to hand the events to again); "
                "to re-run every handler on them, say so with --all-handlers"
            )
        missing = [str(path) for path in args.files if not path.is_file()]
        if missing:
            parser.error(f"no such file: {', '.join(missing)}")
        if args.log and settings.event_log == "local" and not settings.event_log_dir.is_dir():
            parser.error(f"there is no event log at {settings.event_log_dir}")
    except SystemExit as exit:  # argparse printed the usage or help
        return exit.code if isinstance(exit.code, int) else 2

    names = [name.strip() for name in args.handlers.split(",") if name.strip()]
    try:
        targets = resolve_handlers(names) if names else []
        url = settings.redis
        source: TrackingLogs | EventLogSource = (
            EventLogSource(open_event_log(settings), args.since, args.until) if args.log else TrackingLogs(args.files)
        )
    except (InsightsError, ValueError, LookupError) as error:  # ConfigError is a ValueError
        print(f"insights replay: error: {error}", file=sys.stderr)
        return 2
    checkpoint = args.checkpoint or settings.data_dir / "replay.checkpoint"
    keys = Keys(settings.redis_prefix)
    client = redis_of(settings, url)
    intake = Intake(client, stream or keys.intake_stream, keys.intake_unreadable)
    try:
        stats = replay(
            intake, source, targets=targets, rate=args.rate, chunk_size=args.chunk,
            checkpoint=checkpoint, progress=not args.no_progress, sender=args.sender, reprocess=args.reprocess,
        )  # fmt: skip
        print(summary(stats, targets))
        if args.wait > 0 and stats.receipts:
            for line in describe_report(report(client, keys, stats.receipts, args.wait), stats.chunks, args.reprocess):
                print(line)
        elif stats.receipts:
            print(
                f"not waiting for the batcher (--wait 0): see what each chunk's events came to with "
                f"GET /receipt/<receipt> (the first {stats.receipts[0]}, the last {stats.receipts[-1]})"
            )
    except CheckpointError as error:
        print(f"insights replay: error: {error}", file=sys.stderr)
        return 2
    except ReplayInterrupted as interrupted:
        kept = f"checkpoint kept in {checkpoint}" if checkpoint.exists() else "nothing sent yet"
        print(f"interrupted: {summary(interrupted.stats, targets)}; {kept}")
        return 1
    except (redis.RedisError, OSError, PyMongoError) as error:
        kept = f"checkpoint kept in {checkpoint}" if checkpoint.exists() else "nothing sent yet"
        print(f"insights replay: failed: {error}; {kept}", file=sys.stderr)
        return 1
    finally:
        client.close()
        if isinstance(source, EventLogSource):
            source.log.close()
    return 0


def _moment(text: str) -> float:
    """A unix time from the command line: seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (e.g. 2026-11-01T00:00:00+00:00)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def summary(stats: ReplayStats, targets: Sequence[str] = ()) -> str:
    """One line about a replay, for people."""
    speed = stats.events / stats.seconds if stats.seconds > 0 else 0.0
    kind = "reprocessed" if stats.generation is not None else "replayed"
    text = (
        f"{kind} {stats.events:,} events in {stats.chunks:,} chunks to {', '.join(targets) or 'every handler'}"
        f" in {stats.seconds:.1f} s ({speed:,.0f} events/s)"
    )
    if stats.skipped_malformed:
        text += f", {stats.skipped_malformed:,} malformed lines skipped"
    if stats.resumed_from is not None:
        text += f", resumed after {stats.resumed_from.segment}:{stats.resumed_from.offset}"
    return text
