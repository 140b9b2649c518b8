"""The event log in MongoDB (on the tests' nx-27017): documents, order, positions, ranges, size limits,
malformed documents, retention."""

from __future__ import annotations

import base64
import random
import threading
import time
import tracemalloc
import zlib
from typing import Any

import bson
import pytest
from pymongo.database import Database

from tasks.pipeline.event_log import EventLog, Position
from tasks.pipeline.mongo_log import (
    CHUNK_BYTES,
    CLOCK_TOLERANCE,
    COLLECTION,
    LEVEL,
    PART_BYTES,
    MongoEventLog,
    compress,
    micros,
)
from tests.tasks.test_eventlog import records

MAX_BSON = 16 * 1024 * 1024


@pytest.fixture
def log(own_database: Database[Any]) -> MongoEventLog:
    """A log whose resumed reads re-read no margin: exactly what follows a position (and what came late)."""
    return MongoEventLog(own_database, resume_margin=0.0)


def unstamped(position: Position) -> tuple[str, int]:
    """A position without the snapshot it was read in (two reads have two snapshots)."""
    return position.segment.rpartition("@")[0], position.offset


def ids(log: MongoEventLog, start: Position | None = None, **kwargs: Any) -> list[str]:
    return [record["id"] for _, record in log.read(start, **kwargs)]


def test_a_batch_is_one_compressed_document_of_the_local_logs_lines(log: MongoEventLog, tmp_path: Any) -> None:
    batch = records(5)
    log.append(batch, sender="lms", batch="b1")
    log.append(records(2, start=5), batch="b2")
    documents = list(log.collection.find().sort("_id", 1))
    assert [d["_id"] for d in documents] == ["b1.0000.0000", "b2.0000.0000"]
    first = documents[0]
    assert (first["batch"], first["part"], first["chunk"], first["chunks"], first["events"]) == ("b1", 0, 0, 1, 5)
    assert (first["first"], first["last"]) == (micros(batch[0][1]), micros(batch[-1][1]))
    local = EventLog(tmp_path)
    local.append(batch, sender="lms")
    local.append(records(2, start=5))
    assert zlib.decompress(first["data"]) == local.segments()[0].read_bytes().split(b'{"id":"id-5"')[0]
    assert [record for _, record in log.read()] == [record for _, record in local.read()]
    assert log.description == f"eventlog:mongodb:{log.database.name}.{COLLECTION}"


def test_parts_are_standard_zlib_streams_made_with_isal() -> None:
    """ISA-L writes the streams (isal is a requirement); the standard library's zlib reads them, and
    parts that zlib itself wrote (before, or where isal is missing) are read alike (test above)."""
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    rng = random.Random(5)
    lines = b"".join(b'{"id":"e-%d","received":1.5,"event":{"n":%d}}\n' % (n, rng.randrange(9)) for n in range(5000))
    for data in (lines, rng.randbytes(300_000), b"x"):
        stream = compress(data)
        assert stream == isal_zlib.compress(data, LEVEL)
        assert zlib.decompress(stream) == data
        inflate = zlib.decompressobj()
        assert inflate.decompress(stream) == data and inflate.eof
    assert len(compress(lines)) <= len(zlib.compress(lines, LEVEL))


def test_indexes_on_the_time_range(log: MongoEventLog) -> None:
    log.append(records(1))
    keys = [info["key"] for info in log.collection.index_information().values()]
    assert [("first", 1)] in keys and [("last", 1)] in keys


def test_batches_of_several_batchers_are_read_in_receive_order(log: MongoEventLog) -> None:
    # Two batchers' batches overlap in time: their events are merged by receive time.
    log.append([("x1", 1.0, {}), ("x3", 3.0, {}), ("x5", 5.0, {})], batch="x")
    log.append([("y2", 2.0, {}), ("y4", 4.0, {}), ("y6", 6.0, {})], batch="y")
    log.append([("w0", 0.5, {}), ("w7", 7.0, {})], batch="w")
    assert ids(log) == ["w0", "x1", "y2", "x3", "y4", "x5", "y6", "w7"]
    # The same receive time: by batch id, then in the batch's order.
    log.collection.delete_many({})
    log.append([("b-first", 1.0, {}), ("b-second", 1.0, {})], batch="b")
    log.append([("a-only", 1.0, {})], batch="a")
    assert ids(log) == ["a-only", "b-first", "b-second"]


def test_reading_from_a_position_continues_right_after_it(log: MongoEventLog) -> None:
    for n in range(6):
        log.append([(f"id-{n}-{i}", 100.0 + (n * 4 + i) % 9, {"i": i}) for i in range(4)], batch=f"b{n}")
    everything = list(log.read())
    assert len(everything) == 24
    positions = [position for position, _ in everything]
    assert positions == sorted(positions) and len(set(positions)) == 24
    received = [record["received"] for _, record in everything]
    assert received == sorted(received)
    for index, (position, _) in enumerate(everything):
        rest = [(unstamped(p), record) for p, record in log.read(position)]
        assert rest == [(unstamped(p), record) for p, record in everything[index + 1 :]], index
    with pytest.raises(ValueError, match="not a position in the MongoDB event log"):
        next(log.read(Position("events-x.jsonl", 3)))


def test_a_time_range_reads_only_the_events_received_then(log: MongoEventLog) -> None:
    log.append([(f"id-{n}", 1000.0 + n, {}) for n in range(10)], batch="early")
    log.append([(f"late-{n}", 2000.0 + n, {}) for n in range(3)], batch="late")
    assert ids(log, since=1003.0, until=1005.0) == ["id-3", "id-4", "id-5"]
    assert ids(log, since=1008.5) == ["id-9", "late-0", "late-1", "late-2"]
    assert ids(log, until=1000.0) == ["id-0"]
    position = next(p for p, r in log.read() if r["id"] == "id-6")
    assert ids(log, position, until=1008.0) == ["id-7", "id-8"]


def test_records_appended_after_reading_began_are_not_read(log: MongoEventLog) -> None:
    log.append(records(3), batch="before")
    reader = log.read()
    next(reader)
    time.sleep(CLOCK_TOLERANCE + 0.05)  # a snapshot takes in what other hosts' clocks may stamp a little late
    log.append(records(3, start=3, received=1.0), batch="after")  # received earlier, written later
    assert [record["id"] for _, record in reader] == ["id-1", "id-2"]


@pytest.mark.slow  # 30 MB through nx-27017
def test_a_large_batch_is_split_into_parts_and_a_huge_event_into_chunks(log: MongoEventLog) -> None:
    text = base64.b64encode(random.Random(12).randbytes(PART_BYTES // 7)).decode()
    batch = [(f"big-{n}", 50.0 + n, {"n": n, "text": text}) for n in range(12)]  # ~9 MB: three parts
    log.append(batch, batch="parts")
    huge = base64.b64encode(random.Random(13).randbytes(16 * 1024 * 1024)).decode()  # 21 MB: compressed, over 16 MB
    log.append([("huge", 70.0, {"text": huge})], batch="chunks")
    documents = list(log.collection.find({}, {"data": 0}).sort("_id", 1))
    parts = [d for d in documents if d["batch"] == "parts"]
    chunks = [d for d in documents if d["batch"] == "chunks"]
    assert len(parts) == 3 and {d["chunks"] for d in parts} == {1} and sum(d["events"] for d in parts) == 12
    assert len(chunks) >= 2 and [d["chunk"] for d in chunks] == list(range(chunks[0]["chunks"]))
    assert chunks[0]["bytes"] > 20_000_000
    for document in log.collection.find():
        assert len(bson.encode(document)) < MAX_BSON and len(document["data"]) <= CHUNK_BYTES
    read = [record for _, record in log.read()]
    assert [r["id"] for r in read] == [f"big-{n}" for n in range(12)] + ["huge"]
    assert read[3]["event"]["text"] == text and read[-1]["event"]["text"] == huge


def test_writing_a_batch_again_is_harmless(log: MongoEventLog) -> None:
    log.append(records(3), batch="again")
    log.append(records(3), batch="again")  # e.g. a retried write that had gone through
    assert ids(log) == ["id-0", "id-1", "id-2"]


def insert(log: MongoEventLog, _id: str, payload: bytes, **fields: Any) -> None:
    document = {"_id": _id, "batch": _id, "part": 0, "chunk": 0, "chunks": 1, "first": micros(5.0)}
    try:
        size = len(zlib.decompress(payload))
    except zlib.error:
        size = len(payload)
    document.update(last=micros(5.0), events=1, bytes=size, written=time.time(), data=bson.Binary(payload))
    document.update(fields)
    log.collection.insert_one(document)


def test_malformed_documents_and_lines_are_reported_and_skipped(log: MongoEventLog) -> None:
    log.append(records(2, received=1.0), batch="good-before")
    good_line = b'{"id":"ok","received":5.5,"event":{}}\n'
    bomb = zlib.compress(b" " * (32 * 1024 * 1024), 9)  # 32 MB of spaces in 32 KB
    insert(log, "bomb", bomb, bytes=100)  # says 100 bytes
    insert(log, "too-large", bomb, bytes=200 * 1024 * 1024)  # says so: over the limit
    insert(log, "not-zlib", b"garbage")
    insert(log, "no-batch", zlib.compress(good_line), batch=None)
    insert(log, "text-data", b"", data="not bytes")
    insert(log, "bad-lines", zlib.compress(b'not json\n{"id":"no-time","event":{}}\n' + good_line))
    insert(log, "lone-chunk", zlib.compress(good_line), chunk=1, chunks=2)
    insert(log, "half", zlib.compress(good_line)[:5], chunks=2)  # its second chunk never came
    log.append(records(2, start=2, received=9.0), batch="good-after")
    reported: list[tuple[str, int]] = []
    read = ids(log, on_malformed=lambda where, offset: reported.append((where, offset)))
    assert read == ["id-0", "id-1", "ok", "id-2", "id-3"]
    assert sorted(reported) == sorted(
        [("bomb.0000", 0), ("too-large.0000", 0), ("not-zlib.0000", 0), ("no-batch", 0), ("text-data", 0),
         ("bad-lines.0000", 0), ("bad-lines.0000", 1), ("lone-chunk.0000", 0), ("half.0000", 0)]
    )  # fmt: skip


def test_retention_deletes_the_batches_received_before_the_cutoff_once(log: MongoEventLog) -> None:
    now = time.time()
    for n, age in enumerate([40, 31, 29, 0]):
        log.append([(f"age-{age}", now - age * 86400 - 1, {}), (f"age-{age}-b", now - age * 86400, {})], batch=f"b{n}")
    cutoff = now - 30 * 86400
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(log.remove_older(cutoff))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 2  # run twice at once: each document deleted once
    assert ids(log) == ["age-29", "age-29-b", "age-0", "age-0-b"]
    assert log.remove_older(cutoff) == 0


# -- one clock, resuming what was logged late ------------------------------------------------------


def test_parts_written_by_a_host_whose_clock_runs_ahead_are_read_at_once(own_database: Database[Any]) -> None:
    """``written`` is MongoDB's clock: a batcher an hour ahead, read by a host an hour behind."""
    ahead = MongoEventLog(own_database, clock=lambda: time.time() + 3600)
    behind = MongoEventLog(own_database, clock=lambda: time.time() - 3600)
    ahead.append(records(2), batch="from-the-future")
    assert ids(behind) == ["id-0", "id-1"]
    written = ahead.collection.find_one({"batch": "from-the-future"})["written"]  # type: ignore[index]
    server = behind.clock.now(fresh=True)
    # The server's time (as the writer estimates it from its last reading), not the writer's clock an hour ahead.
    assert server - 5.0 < written < server + 1.0
    behind.append(records(1, start=2), batch="from-the-past")
    assert ids(ahead) == ["id-0", "id-1", "id-2"]


def test_resuming_reads_the_parts_logged_late_whatever_their_receive_time(log: MongoEventLog) -> None:
    log.append([(f"id-{n}", 100.0 + n, {}) for n in range(6)], batch="early")
    reader = log.read()
    read = [next(reader) for _ in range(3)]
    position = read[-1][0]  # id-2, received at 102: the checkpoint
    time.sleep(CLOCK_TOLERANCE + 0.05)
    # Logged after that read began: a batch of entries claimed late (received before the checkpoint).
    log.append([("late-101.5", 101.5, {}), ("late-200", 200.0, {})], batch="late")
    resumed = list(log.read(position))
    assert [record["id"] for _, record in resumed] == ["late-101.5", "id-3", "id-4", "id-5", "late-200"]
    # Stopped again in the part read late, and resumed: nothing is lost (what follows is read again).
    again = [record["id"] for _, record in log.read(resumed[0][0])]
    assert {"id-3", "id-4", "id-5", "late-200"} <= set(again) and "late-101.5" not in again


def test_resuming_soon_reads_the_margin_again_and_loses_nothing(own_database: Database[Any]) -> None:
    log = MongoEventLog(own_database)  # the default margin: parts written shortly before the snapshot again
    log.append([(f"id-{n}", 100.0 + n, {}) for n in range(4)], batch="b")
    position = list(log.read())[1][0]
    assert [record["id"] for _, record in log.read(position)] == ["id-0", "id-1", "id-2", "id-3"]
    old = Position(position.segment.rpartition("@")[0], position.offset)  # a checkpoint from before snapshots
    assert [record["id"] for _, record in log.read(old)] == ["id-2", "id-3"]


# -- memory -------------------------------------------------------------------------------------


def test_a_part_naming_more_chunks_than_its_size_can_need_is_malformed(log: MongoEventLog) -> None:
    line = b'{"id":"ok","received":5.5,"event":{}}\n'
    stream = zlib.compress(line)
    count = log.max_chunks + 1  # a part of at most max_part_bytes never needs so many
    assert count == -(-log.max_part_bytes // CHUNK_BYTES) + 2
    for number in range(count):
        piece = stream[number * len(stream) // count : (number + 1) * len(stream) // count]
        insert(log, f"many.0000.{number:04d}", piece, batch="many", chunk=number, chunks=count, bytes=len(line))
    log.append(records(1, received=9.0), batch="good")
    reported: list[tuple[str, int]] = []
    assert ids(log, on_malformed=lambda where, offset: reported.append((where, offset))) == ["id-0"]
    assert reported == [("many.0000", 0)]


def test_batches_spanning_hours_do_not_make_reading_hold_the_log_between(own_database: Database[Any]) -> None:
    """A backlog claimed after a takeover goes out over many rounds, each batch with entries received
    an hour before and new ones: every such part begins in that hour. Reading that hour opened them
    all at once; at most the cap is decoded at once now, in the same exact order."""
    rng = random.Random(7)
    log = MongoEventLog(own_database, max_open_parts=4, max_open_bytes=200_000)
    total = 0
    expected = []
    for n in range(80):  # 80 parts of ~50 KB of lines: one event an hour old, the rest new
        text = base64.b64encode(rng.randbytes(700)).decode()
        batch = [(f"old-{n}", 1000.0 + n, {"text": text})]
        batch += [(f"new-{n}-{i}", 1000.0 + 3600 + n + i / 100, {"text": text}) for i in range(49)]
        log.append(batch, batch=f"b{n:03d}")
        expected += [(received, eid) for eid, received, _ in batch]
        total += sum(len(text) + 60 for _ in batch)
    tracemalloc.start()
    try:
        read = ids(log)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == [eid for _, eid in sorted(expected)]  # the exact order all the same
    stats = log.read_stats
    assert stats.open_parts_peak <= 4 and stats.reopened >= 76, stats
    assert stats.open_bytes_peak <= 200_000, stats
    assert peak < total / 2, (peak, total)
