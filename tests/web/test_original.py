"""A module written the original edX Insights' way (tests/sample_modules/original), end to end
over HTTP: its decorator options, its get_replica_* helpers, its /httpevent intake URL."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlencode

from flask.testing import FlaskClient

from tasks.app import Insights
from tests.conftest import send, wait_handled


def get(client: FlaskClient, kind: str, name: str, **params: Any) -> Any:
    """GET a view or query; JSON results decoded, text returned as is."""
    response = client.get(f"/{kind}/{name}", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json() if response.is_json else response.get_data(as_text=True)


def batch_record(client: FlaskClient, state: dict[str, Any]) -> dict[str, Any]:
    """The record of the one batch a receipt's events went into."""
    (batch,) = state["batches"]
    record: dict[str, Any] = client.get(f"/batch/{batch}").get_json()
    return record


# @view / @query: a shared Python name, description, category, args ------------------------
def test_a_query_and_a_view_sharing_a_python_name_both_answer(client: FlaskClient) -> None:
    assert get(client, "query", "orig_fake_user_count") == 2
    assert get(client, "view", "orig_fake_user_count") == "<html>Users: 2</html>"


def test_description_and_category_are_what_the_schema_shows(client: FlaskClient) -> None:
    entries = {(e["class"], e["name"]): e for e in client.get("/schema").get_json()}
    counted = entries[("query", "orig_fake_user_count")]
    assert (counted["doc"], counted["category"]) == ("Used as test case for query objects", "global")
    assert (
        entries[("view", "orig_fake_user_count")]["doc"] == "Calls the query of the same name through the query object."
    )
    calls = entries[("query", "orig_calls")]
    assert (calls["category"], calls["parameters"]) == ("per run", ["run"])
    assert entries[("query", "orig_three_name")]["aliases"] == ["edx_orig_three_name", "edx.orig_three_name"]
    assert entries[("handler", "orig_event_count_event")]["options"] == {"batch": False}
    assert entries[("handler", "orig_serial")]["options"] == {"single_process": True}
    assert entries[("handler", "orig_on_queue")]["queue"] == "reports"


def test_an_event_property_is_published_with_its_description(client: FlaskClient) -> None:
    properties = {p["name"]: p for p in client.get("/event_properties").get_json()}
    assert properties["orig_agent"]["doc"] == "The user that generated the event (Tin Can's agent)."


# @event_handler(batch=False / single_process / source_queue) -------------------------------
def test_a_batch_false_handler_is_called_once_per_event_and_dead_letters_only_the_failing_one(
    client: FlaskClient, insights: Insights
) -> None:
    run = uuid.uuid4().hex
    events = [{"orig_run": run, "n": n, "user": f"user-{n}", "orig_fail": n == 2} for n in range(5)]
    state = send(client, events)

    handler = "handler.original.orig_event_count_event"
    outcome = batch_record(client, state)["handlers"][handler]  # all five in one batch, one task
    assert (outcome["events"], outcome["dead_lettered"]) == (5, 1)
    assert outcome["error"] == "ValueError: asked to fail by event 2"
    assert get(client, "query", "orig_calls", run=run) == {"0": 1, "1": 1, "3": 1, "4": 1}  # one event per call
    assert get(client, "query", "orig_agents", run=run) == {str(n): f"user-{n}" for n in (0, 1, 3, 4)}
    [letter] = [x for x in insights.dead_letters.list(handler) if x["batch"] in state["batches"]]
    assert [raw["n"] for _, _, raw in letter["events"]] == [2]


def test_a_batch_false_handler_may_take_the_event_itself_and_runs_on_its_source_queue(client: FlaskClient) -> None:
    key = uuid.uuid4().hex
    state = send(client, [{"orig_queue": key, "value": 7}, {"orig_queue": key + "-b", "value": 8}])

    assert get(client, "query", "orig_cache_get", key=f"queue:{key}") == 7
    assert get(client, "query", "orig_cache_get", key=f"queue:{key}-b") == 8
    task = batch_record(client, state)["tasks"]["handler.original.orig_on_queue"]
    assert task["queue"] == "reports"


def test_a_single_process_handler_sees_every_event_in_order_in_one_process(client: FlaskClient) -> None:
    run = uuid.uuid4().hex
    users, steps = 8, 12
    receipts = []
    for step in range(steps):  # many users (spread over every shard when per_user), many batches
        events = [{"orig_serial": run, "username": f"learner-{u}", "seq": step * users + u} for u in range(users)]
        response = client.post("/event", json=events)
        assert response.status_code == 202
        receipts.append(response.get_json()["receipt"])
    batches = {b for receipt in receipts for b in wait_handled(client, receipt)["batches"]}

    assert get(client, "query", "orig_serial_seen", run=run) == {"seq": list(range(users * steps)), "processes": 1}
    for batch in batches:
        tasks = client.get(f"/batch/{batch}").get_json()["tasks"]
        serial = {label: t for label, t in tasks.items() if label.startswith("handler.original.orig_serial")}
        assert [(label, t["queue"]) for label, t in serial.items()] == [
            ("handler.original.orig_serial#user.0", "events.user.0")
        ]


# get_replica_* -----------------------------------------------------------------------------
def test_the_replica_helpers_read_another_modules_database_files_and_cache(client: FlaskClient) -> None:
    user, name, key = f"replica-{uuid.uuid4().hex}", f"replica-{uuid.uuid4().hex}.txt", uuid.uuid4().hex
    send(
        client,
        [  # written by the test module's own handlers
            {"user": user, "n": 1},
            {"user": user, "n": 2},
            {"event": "pyfstest", "create": name, "contents": "written by testmodule"},
            {"event": "cachetest", "key": key, "value": "cached by testmodule", "timeout": 30},
        ],
    )
    assert get(client, "query", "orig_replica_user_count", user=user) == 2
    assert get(client, "query", "orig_replica_readfile", filename=name) == "written by testmodule"
    assert get(client, "query", "orig_replica_cache_get", key=key) == "cached by testmodule"


def test_a_write_through_a_replica_is_refused_with_a_clear_error(client: FlaskClient) -> None:
    send(client, {"event_property_check": True, "user": "ada"})  # the test module caches last_seen_user
    for store, what in (("mongodb", "database"), ("fs", "file store"), ("cache", "cache")):
        response = client.get("/query/orig_replica_write", query_string={"store": store})
        assert response.status_code == 500
        error = response.get_json()["error"]
        assert error.startswith("query 'orig_replica_write' failed: ReadOnlyError: ")
        assert f"read-only view of the {what} of module 'testmodule'" in error
    assert get(client, "query", "djt_cache_get", key="last_seen_user") == "ada"


# The original's other options: cron, memoize_query -----------------------------------------
def test_a_scheduled_memoized_query_registers_and_answers(client: FlaskClient, insights: Insights) -> None:
    assert insights.registry.get("cron", "cron.original.orig_course_size").options["force_memoize"] is True
    assert get(client, "query", "orig_course_size", course="demo") == {"course": "demo", "users": 2}
    entry = next(e for e in client.get("/schema").get_json() if e["name"] == "orig_course_size")
    assert entry["memoized"] is True


# /httpevent --------------------------------------------------------------------------------
def test_the_original_intake_url_takes_events_as_its_tests_sent_them(client: FlaskClient, live_server: str) -> None:
    user = f"httpevent-{uuid.uuid4().hex}"
    params = urlencode({"msg": json.dumps({"user": user})})  # the original's tests: GET /httpevent?msg=...
    with urllib.request.urlopen(f"{live_server}/httpevent?{params}", timeout=30) as response:
        assert response.status == 202
        wait_handled(client, json.loads(response.read())["receipt"])
    posted = client.post("/httpevent", data=json.dumps([{"user": user}, {"user": user}]))
    assert posted.status_code == 202
    wait_handled(client, posted.get_json()["receipt"])

    assert get(client, "query", "djt_user_event_count", user=user) == 3
    missing = client.get("/httpevent")
    assert missing.status_code == 400 and "GET /httpevent needs a 'msg' argument" in missing.get_json()["error"]
