"""Dedupe end to end: per-sender scopes, typed ids, conflicts, occurrences, replays (real pipeline).

The handlers are the real ones of ``modules/testmodule`` (``djt_user_event_count``) and the
idempotent ``count_deliveries`` of ``tests/sample_modules/pipeline`` (one document per
``evt.id`` it was given, with how often it was given it).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.authoring.event_ids import canonical_json, fingerprint
from tasks.core.policy import Policy
from tasks.pipeline.conflicts import EVENT_KEPT_BYTES
from tasks.pipeline.dedupe import Claim, Deduper
from tasks.pipeline.dedupe import fingerprint as handler_token
from tasks.pipeline.event_log import Position
from tasks.pipeline.event_logs import open_event_log
from tasks.pipeline.replay import Item, read_event_log, replay
from tasks.pipeline.stream import Intake
from tests.conftest import CLI, Pipeline, send, wait_handled
from web.app import create_app


@pytest.fixture(scope="module")
def secured(settings: Settings, worker: Pipeline) -> Iterator[Insights]:
    """A deployment with INSIGHTS_AUTH=on, served by the session's worker and batcher."""
    app = create_insights(dataclasses.replace(settings, auth=True))
    yield app
    app.services.close()


def new_sender(secured: Insights) -> tuple[str, FlaskClient]:
    """A fresh API token allowed to post events: its name and a client presenting it."""
    name = f"lms-{uuid.uuid4().hex[:8]}"
    secret = secured.tokens.create(name, Policy(("event",)))
    client = create_app(secured).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return name, client


def delivered(client: FlaskClient, run: str) -> dict[str, int]:
    """Per event id of a run: how often the idempotent test handler was given it."""
    return client.get("/query/delivered", query_string={"run": run}).get_json()


def counted(client: FlaskClient, user: str) -> int:
    """How many events of ``user`` the testmodule's counting handler was given."""
    return client.get("/query/djt_user_event_count", query_string={"user": user}).get_json()


def test_another_senders_earlier_event_with_the_same_id_does_not_suppress_mine(
    client: FlaskClient, secured: Insights
) -> None:
    run, user = uuid.uuid4().hex, f"victim-{uuid.uuid4().hex}"
    theirs, their_client = new_sender(secured)
    mine, my_client = new_sender(secured)
    shared = f"{run}-777001"
    send(their_client, {"id": shared, "run": run, "user": user, "posted_by": "someone else, first"})
    state = send(my_client, {"id": shared, "run": run, "user": user, "posted_by": "me"})
    assert state["duplicates"] == 0 and state["conflicts"] == 0
    assert delivered(client, run) == {f"~@{theirs}:{shared}": 1, f"~@{mine}:{shared}": 1}
    assert counted(client, user) == 2


def test_an_anonymous_event_cannot_suppress_a_named_senders_event(client: FlaskClient, secured: Insights) -> None:
    name, sender = new_sender(secured)
    user = f"scoped-{uuid.uuid4().hex}"
    event = {"id": "e1", "user": user, "time": "2026-01-01T00:00:00Z"}
    for planted in (f"{name}:e1", f"~@{name}:e1"):  # anonymous, planted first: the old form and the new
        assert send(client, {**event, "id": planted})["conflicts"] == 0
    state = send(sender, event)
    assert state["duplicates"] == 0 and state["conflicts"] == 0, state
    assert counted(client, user) == 3


def test_a_numeric_id_and_a_string_id_and_an_id_and_an_event_id_do_not_collide(client: FlaskClient) -> None:
    run, number = uuid.uuid4().hex, random.randrange(10**15, 10**16)
    events = [
        {"id": number, "run": run},
        {"id": str(number), "run": run},
        {"event_id": number, "run": run},
        {"event_id": str(number), "run": run},
    ]
    for event in events:  # one request each: the later ones find the earlier ones on record
        state = send(client, event)
        assert state["duplicates"] == 0 and state["conflicts"] == 0
    assert delivered(client, run) == {
        f"~id.int:{number}": 1,
        str(number): 1,
        f"~event_id.int:{number}": 1,
        f"~event_id:{number}": 1,
    }


def test_a_differing_event_under_a_known_id_is_a_conflict_that_is_counted_kept_and_listed(
    client: FlaskClient, insights: Insights, cli: CLI
) -> None:
    run, user = uuid.uuid4().hex, f"conflicted-{uuid.uuid4().hex}"
    known = f"{run}-known"
    first = {"id": known, "run": run, "user": user, "grade": 0.5}
    changed = {**first, "grade": 1.0}
    send(client, first)
    state = send(client, changed)
    assert state["duplicates"] == 0 and state["conflicts"] == 1
    within = f"{run}-within"  # the same within one request
    state_within = send(client, [{"id": within, "run": run, "n": 1}, {"id": within, "run": run, "n": 2}])
    assert (state_within["duplicates"], state_within["conflicts"]) == (0, 1)

    assert delivered(client, run) == {known: 1, within: 1}  # the handlers were not given them twice
    assert counted(client, user) == 1
    kept = {c["id"]: c for c in insights.conflicts.list() if c["id"] in (known, within)}
    assert kept[known]["event"] == changed and kept[known]["sender"] is None
    assert kept[known]["known"] == fingerprint(canonical_json(first))
    assert kept[known]["fingerprint"] == fingerprint(canonical_json(changed))
    assert kept[known]["receipt"] == state["receipt"] and kept[known]["time"] > 0
    assert kept[within]["event"] == {"id": within, "run": run, "n": 2}
    assert not kept[known]["truncated"] and kept[known]["size"] == len(canonical_json(changed))
    listed = cli("conflicts", "list").stdout
    assert known in listed and kept[known]["known"] in listed and '"grade": 1.0' in listed


def test_a_conflicting_event_keeps_a_bounded_amount_of_redis_memory(
    client: FlaskClient, insights: Insights, cli: CLI
) -> None:
    redis = insights.services.redis
    event_id = f"conflict-size-{uuid.uuid4().hex}"
    send(client, {"id": event_id, "user": "filler", "pad": ""})
    before = redis.memory_usage(insights.keys.conflicts, samples=0) or 0
    big = {"id": event_id, "user": "filler", "pad": "x" * (2 * 1024 * 1024)}
    state = send(client, big)
    assert state["conflicts"] == 1
    grown = (redis.memory_usage(insights.keys.conflicts, samples=0) or 0) - before
    assert grown < 256 * 1024, f"one conflict holds {grown} bytes of Redis memory"
    kept = next(c for c in insights.conflicts.list() if c["id"] == event_id)
    whole = canonical_json(big)
    assert kept["truncated"] and kept["event"] is None and kept["size"] == len(whole)
    assert kept["event_json"] == whole[:EVENT_KEPT_BYTES]
    assert kept["fingerprint"] == fingerprint(whole)  # still tells which event it was
    listed = next(line for line in cli("conflicts", "list").stdout.splitlines() if event_id in line)
    assert f"(cut: the first {EVENT_KEPT_BYTES} of {len(whole)} bytes)" in listed


def test_one_claim_call_tells_new_events_duplicates_new_handlers_and_conflicts_apart(insights: Insights) -> None:
    deduper = Deduper(insights.services.redis, 60, insights.keys)
    ids = [f"claim-{uuid.uuid4().hex}-{n}" for n in range(3)]
    prints = [fingerprint(canonical_json({"n": n})) for n in range(3)]
    assert deduper.claim(ids, prints, ["h.a"]) == [Claim(("h.a",))] * 3
    changed = [prints[0], fingerprint(canonical_json({"n": "changed"})), prints[2]]
    assert deduper.claim(ids, changed, ["h.a", "h.b"]) == [Claim(("h.b",)), Claim((), known=prints[1]), Claim(("h.b",))]
    assert deduper.claim(ids, prints, ["h.a", "h.b"]) == [Claim(()), Claim(("h.b",)), Claim(())]


def test_a_dedupe_key_from_before_fingerprints_takes_the_first_one_it_meets(insights: Insights) -> None:
    redis = insights.services.redis
    deduper = Deduper(redis, 60, insights.keys)
    old = f"legacy-{uuid.uuid4().hex}"
    redis.set(insights.keys.seen(old), handler_token("handler.a"), ex=60)  # as written before fingerprints were kept
    f1, f2 = fingerprint(canonical_json({"n": 1})), fingerprint(canonical_json({"n": 2}))
    assert deduper.claim([old], [f1], ["handler.a", "handler.b"]) == [Claim(("handler.b",))]
    assert deduper.claim([old], [f2], ["handler.a", "handler.b"]) == [Claim((), known=f1)]
    assert deduper.claim([old], [f1], ["handler.a", "handler.b"]) == [Claim(())]


def test_a_dedupe_key_from_before_the_buckets_is_still_read_with_its_fingerprint(insights: Insights) -> None:
    redis = insights.services.redis
    deduper = Deduper(redis, 60, insights.keys)
    old = f"legacy-{uuid.uuid4().hex}"
    f1, f2 = fingerprint(canonical_json({"n": 1})), fingerprint(canonical_json({"n": 2}))
    redis.set(insights.keys.seen(old), f1 + handler_token("handler.a"), ex=60)  # one key per id, as before
    assert deduper.claim([old], [f1], ["handler.a"]) == [Claim(())]
    assert deduper.claim([old], [f2], ["handler.a"]) == [Claim((), known=f1)]
    assert deduper.claim([old], [f1], ["handler.a", "handler.b"]) == [Claim(("handler.b",))]
    assert deduper.claim([old], [f1], ["handler.a", "handler.b"]) == [Claim(())]


def test_an_identical_re_send_with_an_id_is_still_deduplicated(client: FlaskClient, secured: Insights) -> None:
    run, user = uuid.uuid4().hex, f"resent-{uuid.uuid4().hex}"
    event = {"id": f"{run}-same", "run": run, "user": user}
    name, token_client = new_sender(secured)
    for poster in (client, token_client):
        send(poster, event)
        again = send(poster, event)
        assert (again["duplicates"], again["conflicts"]) == (1, 0)  # a success to the sender
    assert delivered(client, run) == {event["id"]: 1, f"~@{name}:{event['id']}": 1}
    assert counted(client, user) == 2


def test_the_same_event_without_id_or_time_posted_twice_counts_twice(client: FlaskClient) -> None:
    user = f"twice-{uuid.uuid4().hex}"
    assert send(client, {"user": user})["duplicates"] == 0
    assert send(client, {"user": user})["duplicates"] == 0
    assert send(client, [{"user": user}, {"user": user}])["duplicates"] == 0
    assert counted(client, user) == 4  # as the original edX Insights counted every hit

    timed = {"user": f"{user}-timed", "time": "2026-11-01T10:00:00.000000+00:00", "event_type": "play_video"}
    send(client, timed)
    assert send(client, timed)["duplicates"] == 1  # a re-sent tracking-log line is still one event
    assert counted(client, timed["user"]) == 1


class RecordingIntake(Intake):
    """The real intake stream, remembering the receipt of every chunk submitted."""

    def __init__(self, intake: Intake) -> None:
        super().__init__(intake._client, intake.stream, intake.unreadable)
        self.receipts: list[str] = []

    def submit(self, events: Sequence[dict[str, Any]], *args: Any, **kwargs: Any) -> str:
        receipt = super().submit(events, *args, **kwargs)
        self.receipts.append(receipt)
        return receipt


def test_replaying_the_event_log_twice_changes_nothing(
    client: FlaskClient, insights: Insights, secured: Insights, worker: Pipeline
) -> None:
    run, user = uuid.uuid4().hex, f"replayed-{uuid.uuid4().hex}"
    name, token_client = new_sender(secured)
    plain = {"run": run, "user": user}  # neither id nor time: each one posted is one more event
    send(client, [plain, plain])
    send(token_client, [plain, {**plain, "id": "a"}, {**plain, "time": "2026-11-01T00:00:00+00:00"}])
    before = delivered(client, run)
    assert len(before) == 5 and set(before.values()) == {1} and counted(client, user) == 5
    assert sum(key.startswith(f"~@{name}:") for key in before) == 3

    log = open_event_log(worker.settings, insights.services.mongo)

    def this_run(start: Position | None) -> Iterator[Item]:
        return (item for item in read_event_log(log, start) if item[1].get("run") == run)

    for _ in range(2):
        intake = RecordingIntake(insights.intake)
        stats = replay(intake, this_run, chunk_size=2, progress=False)
        assert stats.events == 5
        states = [wait_handled(client, receipt) for receipt in intake.receipts]
        assert sum(s["duplicates"] for s in states) == 5 and sum(s["conflicts"] for s in states) == 0
    assert delivered(client, run) == before
    assert counted(client, user) == 5
