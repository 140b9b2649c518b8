"""Ordered handlers: events of one user reach a per_user handler in order, shards in parallel."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tasks.pipeline.shards import shard_key, shard_of
from tests.conftest import wait_handled


@pytest.mark.parametrize(
    ("event", "by", "key"),
    [
        ({"username": "ada", "context": {"user_id": 7}}, "user", "ada"),
        ({"context": {"user_id": 7, "path": "/courses/x"}}, "user", "7"),
        ({"actor": {"account": {"name": "bob"}}, "object": {"id": "http://x/video/1"}}, "user", "bob"),
        ({"actor": {"mbox": "mailto:c@x"}}, "user", "mailto:c@x"),
        ({"event": {"id": "video-9"}, "username": "ada"}, "resource", "video-9"),
        ({"object": {"id": "http://x/video/1"}}, "resource", "http://x/video/1"),
        ({"event": {"problem_id": "p1"}}, "resource", "p1"),
        ({"page": "https://lms/x"}, "resource", "https://lms/x"),
        ({"nothing": 1}, "user", ""),
    ],
)
def test_the_shard_key_is_read_from_edx_and_xapi_events(event: dict, by: str, key: str) -> None:
    assert shard_key(event, by) == key


def test_with_the_data_layer_loaded_the_shard_key_is_its_agent_and_object(insights: Insights) -> None:
    statement = {
        "actor": {"mbox": "mailto:c@x"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"id": "http://x/video/1"},
    }
    agent = insights.properties["agent"]
    assert shard_key(statement, "user", insights.properties) == agent(insights.event(statement)) == "c@x"
    assert shard_key(statement, "resource", insights.properties) == "http://x/video/1"
    assert shard_key({"user": "ada"}, "user", insights.properties) == "ada"  # no agent: the first field named


def test_one_user_always_maps_to_one_shard_and_users_spread_over_shards() -> None:
    shards = [shard_of({"username": f"user-{n}"}, "user", 4) for n in range(200)]
    assert shards == [shard_of({"username": f"user-{n}"}, "user", 4) for n in range(200)]
    assert set(shards) == {0, 1, 2, 3}
    assert shard_of({}, "user", 4) == 0


def test_per_user_order_holds_while_shards_run_in_parallel(client: FlaskClient) -> None:
    run = uuid.uuid4().hex
    users = [f"learner-{n}" for n in range(16)]
    steps = 25
    receipts = []
    for seq in range(steps):  # one request per step, every user in each: many batches, interleaved
        events = [{"order_run": run, "username": user, "seq": seq} for user in users]
        response = client.post("/event", json=events)
        assert response.status_code == 202
        receipts.append(response.get_json()["receipt"])
    batches = {b for receipt in receipts for b in wait_handled(client, receipt)["batches"]}
    sequences = client.get("/query/sequences", query_string={"run": run}).get_json()
    assert sequences == {user: list(range(steps)) for user in users}
    labels = {label for b in batches for label in client.get(f"/batch/{b}").get_json()["handlers"]}
    shards_used = {label for label in labels if label.startswith("handler.pipeline.in_order#user.")}
    assert len(shards_used) >= 3  # the users were spread over several shard queues
