"""The batcher end to end: batching, idempotency, receipts, replay (real worker, Redis, Mongo)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tasks.authoring.event_ids import event_id
from tasks.core.tokens import TokenStore
from tasks.pipeline.batcher import Batcher
from tasks.pipeline.event_logs import open_event_log
from tasks.pipeline.replay import replay
from tasks.pipeline.stream import entry_fields
from tests.conftest import Pipeline, as_token, new_token, send, wait_for, wait_handled
from tests.tasks.test_dedupe import RecordingIntake


def delivered(client: FlaskClient, run: str) -> dict[str, int]:
    """Per event id of a run: how often the idempotent test handler was given it."""
    return client.get("/query/delivered", query_string={"run": run}).get_json()


def test_events_sent_one_by_one_are_grouped_into_few_batches(client: FlaskClient, worker: Pipeline) -> None:
    run = uuid.uuid4().hex
    receipts = []
    assert worker.batcher is not None
    # The batcher is held while the 40 requests arrive, however slowly this machine posts them;
    # it then finds them waiting, as it finds requests that arrive within its 100 ms interval.
    os.kill(worker.batcher.pid, signal.SIGSTOP)
    try:
        for n in range(40):
            response = client.post("/event", json={"run": run, "n": n})
            assert response.status_code == 202
            receipts.append(response.get_json()["receipt"])
    finally:
        os.kill(worker.batcher.pid, signal.SIGCONT)
    batches = {batch for receipt in receipts for batch in wait_handled(client, receipt)["batches"]}
    assert len(batches) <= 2  # 40 requests in one batch (two if its blocked read had taken the first one)
    assert sorted(delivered(client, run).values()) == [1] * 40


def test_a_full_batch_is_dispatched_without_waiting_and_split_at_the_batch_size(
    client: FlaskClient, insights: Insights
) -> None:
    run = uuid.uuid4().hex
    size = insights.settings.batch_size
    state = send(client, [{"run": run, "n": n} for n in range(size + 10)])
    sizes = sorted(client.get(f"/batch/{b}").get_json()["events"] for b in state["batches"])
    assert sizes == [10, size]
    assert len(delivered(client, run)) == size + 10


def timed(run: str, count: int) -> list[dict[str, Any]]:
    """Events with a time (as tracking-log lines have): without an id, their content identifies them."""
    return [{"run": run, "n": n, "time": f"2026-11-01T00:00:{n % 60:02d}+00:00"} for n in range(count)]


def test_duplicates_within_and_across_requests_are_handled_once_and_count_as_success(client: FlaskClient) -> None:
    run = uuid.uuid4().hex
    events = timed(run, 5)
    first = send(client, [*events, events[0], events[1]])
    assert first["duplicates"] == 2
    again = client.post("/event", json=events)
    assert again.status_code == 202  # a duplicate is a success to the sender
    assert wait_handled(client, again.get_json()["receipt"])["duplicates"] == 5
    assert sorted(delivered(client, run).values()) == [1] * 5


def test_events_carrying_an_id_are_deduplicated_by_it(client: FlaskClient) -> None:
    run = uuid.uuid4().hex
    send(client, [{"id": f"{run}-a", "run": run, "v": 1}, {"event_id": f"{run}-b", "run": run}])
    again = send(client, [{"event_id": f"{run}-b", "run": run}, {"id": f"{run}-a", "run": run, "v": 1}])
    assert again["duplicates"] == 2
    assert delivered(client, run) == {f"{run}-a": 1, f"~event_id:{run}-b": 1}


def test_gzip_bodies_are_accepted_and_corrupt_or_oversized_ones_refused(client: FlaskClient) -> None:
    run = uuid.uuid4().hex
    body = gzip.compress(json.dumps([{"run": run, "n": n} for n in range(20)]).encode())
    response = client.post("/event", data=body, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    assert response.status_code == 202
    wait_handled(client, response.get_json()["receipt"])
    assert len(delivered(client, run)) == 20
    corrupt = client.post("/event", data=body[:-9] + b"garbage!!", headers={"Content-Encoding": "gzip"})
    assert corrupt.status_code == 400 and "gzip" in corrupt.get_json()["error"]
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    bomb = gzip.compress(b"[" + b" " * (limit + 10) + b"]")
    assert client.post("/event", data=bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
    assert client.post("/event", data=body, headers={"Content-Encoding": "br"}).status_code == 415


def test_an_unknown_receipt_is_404(client: FlaskClient) -> None:
    assert client.get("/receipt/1-1").status_code == 404
    assert client.get("/receipt/not-a-receipt").status_code == 404


def test_replaying_the_same_events_twice_changes_nothing(client: FlaskClient, insights: Insights) -> None:
    run = uuid.uuid4().hex
    events = timed(run, 30)
    send(client, events)

    def source(start: Any) -> Any:
        return ((n, event) for n, event in enumerate(events))

    intake = RecordingIntake(insights.intake)
    for _ in range(2):
        replay(intake, source, chunk_size=7, progress=False)
    states = [wait_handled(client, receipt) for receipt in intake.receipts]  # this test's entries, not the backlog
    assert sum(state["duplicates"] for state in states) == 2 * 30
    check = send(client, [{"run": run, "n": "marker"}])
    assert check["duplicates"] == 0
    assert sorted(delivered(client, run).values()) == [1] * 31


def test_a_replay_to_one_handler_backfills_only_that_handler(client: FlaskClient, insights: Insights) -> None:
    run = uuid.uuid4().hex
    user = f"backfill-{run}"
    events = [{**event, "user": user} for event in timed(run, 12)]
    receipt = insights.intake.submit(events, targets=["handler.pipeline.count_deliveries"])
    wait_handled(client, receipt)
    assert len(delivered(client, run)) == 12
    assert client.get(f"/query/djt_user_event_count?user={user}").get_json() == 0  # other handlers untouched
    again = insights.intake.submit(events, targets=["handler.pipeline.count_deliveries"])
    assert wait_handled(client, again)["duplicates"] == 12
    send(client, events)  # live: the other handlers have not had them yet, count_deliveries has
    assert client.get(f"/query/djt_user_event_count?user={user}").get_json() == 12
    assert sorted(delivered(client, run).values()) == [1] * 12


def test_the_event_log_keeps_every_accepted_event_once(client: FlaskClient, worker: Pipeline) -> None:
    run = uuid.uuid4().hex
    events = timed(run, 15)
    send(client, events)
    send(client, events[:5])  # duplicates are not logged again
    log = open_event_log(worker.settings)  # the deployment's (MongoDB by default)
    try:
        mine = [record for _, record in log.read() if record["event"].get("run") == run]
    finally:
        log.close()
    assert sorted(record["event"]["n"] for record in mine) == list(range(15))
    assert all(record["id"] and record["received"] > 0 for record in mine)


def test_an_unreadable_intake_entry_is_set_aside_and_does_not_stop_the_batcher(
    client: FlaskClient, insights: Insights
) -> None:
    redis = insights.services.redis
    bad = redis.xadd(insights.intake.stream, {"events": "[{not json", "n": 1, "targets": ""})
    run = uuid.uuid4().hex
    send(client, [{"run": run, "n": 1}])  # handled after the bad entry: the batcher went on
    assert delivered(client, run) == {next(iter(delivered(client, run))): 1}
    kept = [fields for _, fields in redis.xrange(insights.keys.intake_unreadable) if fields[b"entry"] == bad]
    assert kept and kept[0][b"events"] == b"[{not json"
    assert not redis.xrange(insights.intake.stream, min=bad, max=bad)


@pytest.mark.slow  # 10,000 events: a load test
def test_another_senders_small_request_is_handled_long_before_a_big_one_completes(
    web: FlaskClient, store: TokenStore, insights: Insights
) -> None:
    big_sender, small_sender = (as_token(web, new_token(store, "event", "query:*")) for _ in range(2))
    run, size = uuid.uuid4().hex, insights.settings.batch_size
    big = [{"run": run, "n": n} for n in range(20 * size)]
    started = time.monotonic()
    big_receipt = big_sender.post("/event", json=big).get_json()["receipt"]
    sent = time.monotonic()
    small = small_sender.post("/event", json=[{"run": uuid.uuid4().hex, "n": "small"}]).get_json()["receipt"]

    def done(client: FlaskClient, receipt: str) -> bool:
        return bool(client.get(f"/receipt/{receipt}").get_json()["state"] == "done")

    wait_for(lambda: done(small_sender, small), timeout=180, what="the small request to be handled")
    small_latency = time.monotonic() - sent
    handled_by_then = len(delivered(big_sender, run))
    wait_for(lambda: done(big_sender, big_receipt), timeout=180, what="the big request to be handled")
    big_latency = time.monotonic() - started
    print(f"small request handled {small_latency:.2f} s after it was sent, {handled_by_then} of the big one's "
          f"{len(big)} events by then; the big one after {big_latency:.2f} s")  # fmt: skip
    assert handled_by_then <= len(big) // 2, (small_latency, big_latency)
    assert sorted(delivered(big_sender, run).values()) == [1] * len(big)


def test_one_senders_requests_keep_their_order_across_rounds(client: FlaskClient, insights: Insights) -> None:
    run, size = uuid.uuid4().hex, insights.settings.batch_size
    big = [{"order_run": run, "username": "ada", "seq": n, "time": n} for n in range(3 * size)]
    first = client.post("/event", json=big).get_json()["receipt"]
    last = client.post("/event", json=[{"order_run": run, "username": "ada", "seq": 3 * size, "time": -1}])
    wait_handled(client, first)
    wait_handled(client, last.get_json()["receipt"])
    assert client.get("/query/sequences", query_string={"run": run}).get_json() == {"ada": list(range(3 * size + 1))}


def test_one_senders_backlog_goes_out_in_rounds_back_to_back_not_one_batch_per_interval(
    unattended: Insights,
) -> None:
    size = unattended.settings.batch_size
    receipts = [unattended.intake.submit([{"round": r, "n": n} for n in range(size)]) for r in range(6)]
    batcher = Batcher(unattended, consumer="backlog")
    batcher.ensure_group()
    try:
        batcher.step(max_block=0.5)  # reads the six requests, a batch each, and flushes
        assert unattended.intake.backlog() == 0  # all dispatched in this step, in six rounds
        assert all(len(unattended.store.receipt(r)["batches"]) == 1 for r in receipts)
    finally:
        batcher.close()


def test_a_batch_whose_handler_set_cannot_be_numbered_is_set_aside_not_retried_forever(unattended: Insights) -> None:
    app, handler = unattended, "handler.pipeline.count_deliveries"
    batcher = Batcher(app, consumer="numbers")
    batcher.ensure_group()
    try:
        first = app.intake.submit([{"n": 0}], targets=[handler])
        batcher.step(max_block=0.2)
        batcher.flush(whole=True)
        assert app.intake.backlog() == 0 and len(app.store.receipt(first)["batches"]) == 1
        # Every one of the 65,535 numbers a set of handlers can have is taken (dedupe.py).
        app.services.redis.hset(f"{app.keys.dedupe_prefix}handlers", "#", 65535)
        known = app.intake.submit([{"n": 1}], targets=[handler])  # a set numbered already: goes on
        new = app.intake.submit([{"n": 2}])  # every handler: a set never claimed before
        batcher.step(max_block=0.2)
        batcher.flush(whole=True)
        assert app.intake.backlog() == 0
        assert len(app.store.receipt(known)["batches"]) == 1
        kept = [f for _, f in app.services.redis.xrange(app.intake.unreadable) if f[b"entry"].decode() == new]
        assert len(kept) == 1 and b"too many distinct handler sets" in kept[0][b"error"]
        assert json.loads(kept[0][b"events"]) == [{"n": 2}]
    finally:
        batcher.close()


def test_the_ids_and_fingerprints_the_web_app_derives_are_those_the_batcher_would(unattended: Insights) -> None:
    app, handler = unattended, "handler.pipeline.count_deliveries"
    events = [{"id": 7, "v": 1}, {"event_id": "e", "v": 2}, {"v": 3, "time": "2026-11-01T00:00:00+00:00"}, {"v": 4}]
    batcher = Batcher(app, consumer="derived")
    batcher.ensure_group()
    try:
        derived = app.intake.submit(events, targets=[handler], sender="lms")  # as the web app stores events
        as_sent = app.intake.submit_json(json.dumps(events), len(events), targets=[handler], sender="other")
        again = app.intake.submit(events[:3], targets=[handler], sender="lms")
        resent = app.intake.submit_json(json.dumps(events[:3]), 3, targets=[handler], sender="lms")  # batcher derives
        batcher.step(max_block=0.2)
        batcher.flush(whole=True)
        assert app.intake.backlog() == 0
        batches = {b for receipt in (derived, as_sent) for b in app.store.receipt(receipt)["batches"]}
        stored = {record[0]: record[2] for batch in batches for record in app.store.events(batch)}
        for receipt, sender in ((derived, "lms"), (as_sent, "other")):
            ids = [event_id(e, sender=sender, occurrence=f"{receipt}/{i}") for i, e in enumerate(events)]
            assert [stored[i] for i in ids] == events
        assert len(stored) == 2 * len(events)
        for receipt in (again, resent):  # the same ids and fingerprints: re-sends, not conflicts
            assert app.store.receipt(receipt)["duplicates"] == 3 and app.store.receipt(receipt)["conflicts"] == 0
    finally:
        batcher.close()


def test_an_entry_whose_derived_fields_do_not_fit_its_events_is_set_aside(unattended: Insights) -> None:
    app = unattended
    fields = entry_fields([{"n": 1}, {"n": 2}], sender="lms")
    broken = [{**fields, "sizes": "5,5"}, {**fields, "prints": fields["prints"][:16]}, {**fields, "derived": "[1,2]"}]
    batcher = Batcher(app, consumer="broken")
    batcher.ensure_group()
    try:
        entries = [app.services.redis.xadd(app.intake.stream, f).decode() for f in broken]
        batcher.step(max_block=0.2)
        batcher.flush(whole=True)
        assert app.intake.backlog() == 0
        kept = {f[b"entry"].decode() for _, f in app.services.redis.xrange(app.intake.unreadable)}
        assert set(entries) <= kept
    finally:
        batcher.close()


def test_the_next_round_goes_while_a_rounds_log_write_finishes_and_acknowledgement_waits_for_it(
    unattended: Insights,
) -> None:
    """The event-log write is pipelined: a round is dispatched and the batcher goes on to read and
    dispatch the next while its write is under way (held here behind a gate in the writer thread);
    its entries are acknowledged only once the write is done: an acknowledged event is in the log."""
    app = unattended
    batcher = Batcher(app, consumer="pipelined")
    batcher.ensure_group()
    gate = threading.Event()
    batcher.log_writer.submit(gate.wait, 120)  # the writer is busy: round writes wait behind this
    try:
        first = app.intake.submit([{"pipelined": 1, "tag": batcher.consumer}])
        second = app.intake.submit([{"pipelined": 2, "tag": batcher.consumer}], sender="other")
        flushed = threading.Thread(target=lambda: (batcher.step(max_block=0.5), batcher.flush()))
        flushed.start()
        wait_for(lambda: not flushed.is_alive(), timeout=30, what="a round dispatched without waiting for its log")
        assert not any(app.store.receipt(r).get("batches") for r in (first, second))  # not linked yet...
        assert app.intake.backlog() == 2  # ...nor acknowledged
        assert batcher.unlogged and batcher.unlogged[-1].done
        gate.set()
        wait_for(lambda: (batcher.step(max_block=0.05), app.intake.backlog() == 0)[1], what="the acknowledgement")
        assert all(len(app.store.receipt(r)["batches"]) == 1 for r in (first, second))
        logged = [r["event"] for _, r in open_event_log(app.settings, app.services.mongo).read()]
        assert [e["pipelined"] for e in logged if e.get("tag") == batcher.consumer] == [1, 2]
    finally:
        gate.set()
        batcher.close()
