"""The test module's behaviours, end to end: HTTP → broker → worker → Mongo/Redis/fs → HTTP."""

from __future__ import annotations

import json
import logging
import logging.handlers
import uuid
from typing import Any

from flask.testing import FlaskClient
from pymongo.database import Database

from modules import testmodule
from tasks.authoring.events import Event
from tests.conftest import send, wait_for


def query(client: FlaskClient, name: str, **params: Any) -> Any:
    """GET a query; JSON results decoded, text returned as is."""
    response = client.get(f"/query/{name}", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json() if response.is_json else response.get_data(as_text=True)


def test_event_count_counts_every_event_globally_and_per_user(own_database: Database[Any]) -> None:
    """The handler and queries as plain functions on a database of the test's own: the global
    count is exact only where no other test's events arrive (the pipeline's is shared by all)."""
    raw = [{"user": "alice", "n": 1}, {"user": "alice", "n": 2}, {"user": "bob"}, {"no_user": "alice"}]
    events = [Event(event) for event in raw]
    testmodule.djt_event_count_event(mongodb=own_database, events=events[:2])
    testmodule.djt_event_count_event(mongodb=own_database, events=events[2:])  # batches add up
    assert testmodule.djt_event_count(mongodb=own_database) == 4
    assert testmodule.djt_user_event_count(mongodb=own_database, user="alice") == 2
    assert testmodule.djt_user_event_count(mongodb=own_database, user="bob") == 1
    assert testmodule.djt_clear_database(mongodb=own_database) == "Database clear"
    assert testmodule.djt_event_count(mongodb=own_database) == 0
    assert testmodule.djt_user_event_count(mongodb=own_database, user="alice") == 0


def test_events_are_counted_per_user_through_the_pipeline(client: FlaskClient) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    send(client, [{"user": alice, "n": 1}, {"user": alice, "n": 2}, {"user": bob}, {"no_user": alice}])
    assert query(client, "djt_user_event_count", user=alice) == 2
    assert query(client, "djt_user_event_count", user=bob) == 1


def test_every_intake_form_is_accepted(client: FlaskClient) -> None:
    user = f"forms-{uuid.uuid4().hex}"
    e = [{"user": user, "n": n} for n in range(8)]  # one distinct event per item
    forms = [
        json.dumps(e[0]),  # one event
        json.dumps([e[1], e[2]]),  # a list
        json.dumps(json.dumps(e[3])),  # a JSON string
        json.dumps([json.dumps(e[4]), json.dumps(e[5])]),  # a list of JSON strings
        f"{json.dumps(e[6])}\n\n{json.dumps(e[7])}\n",  # newline-delimited JSON
    ]
    for body in forms:
        send(client, body, content_type="application/json")
    assert query(client, "djt_user_event_count", user=user) == 1 + 2 + 1 + 2 + 2


def test_files_are_created_served_and_deleted_by_events(client: FlaskClient) -> None:
    name = f"created-{uuid.uuid4().hex}.txt"
    send(client, {"event": "pyfstest", "create": name, "contents": "hello from a handler"})
    assert query(client, "djt_readfile", filename=name) == "hello from a handler"
    url = query(client, "djt_file_url", filename=name)
    served = client.get(url)
    assert served.status_code == 200
    assert served.get_data(as_text=True) == "hello from a handler"
    assert served.mimetype == "application/octet-stream"  # a download: only raster images are shown inline
    assert served.headers["Content-Disposition"] == f"attachment; filename={name}"
    send(client, {"event": "pyfstest", "delete": name})
    assert query(client, "djt_readfile", filename=name) == "File not found"
    assert client.get(url).status_code == 404


def test_expired_files_are_forgotten(client: FlaskClient) -> None:
    kept, forgotten = f"kept-{uuid.uuid4().hex}.txt", f"gone-{uuid.uuid4().hex}.txt"
    send(
        client,
        [
            {"fs_forgets_contents": "still here", "filename": kept, "fs_forgets_expiry": 3600},
            {"fs_forgets_contents": "soon gone", "filename": forgotten},
        ],
    )
    assert query(client, "djt_readfile", filename=forgotten) == "soon gone"
    send(client, {"fs_forgets_expiry": -5, "filename": forgotten})
    assert query(client, "djt_readfile", filename=forgotten) == "File not found"
    assert client.get(query(client, "djt_file_url", filename=forgotten)).status_code == 404
    assert query(client, "djt_readfile", filename=kept) == "still here"


def test_cache_is_set_by_an_event_and_read_by_a_query(client: FlaskClient) -> None:
    key = f"key-{uuid.uuid4().hex}"
    send(client, {"event": "cachetest", "key": key, "value": {"n": [1, 2, 3]}, "timeout": 60})
    assert query(client, "djt_cache_get", key=key) == {"n": [1, 2, 3]}
    assert query(client, "djt_cache_get", key=f"never-set-{key}") is None


def test_event_property_is_computed_for_handlers(client: FlaskClient) -> None:
    user = f"agent-{uuid.uuid4().hex}"
    send(client, {"event_property_check": True, "username": user})
    assert query(client, "djt_cache_get", key="last_seen_user") == user


def test_a_view_calls_a_query_through_the_query_object(client: FlaskClient) -> None:
    response = client.get("/view/djt_fake_user_count")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.get_data(as_text=True) == "<html>Users: 2</html>"
    assert query(client, "djt_fake_user_count") == 2


def test_a_query_answers_to_each_of_its_three_names(client: FlaskClient) -> None:
    for name in ("djt_three_name", "edx_djt_three_name", "edx.djt_three_name"):
        assert query(client, name) == "I have three names"
    assert query(client, "djt_check_three_name") == "Works"


def test_a_failing_handler_does_not_stop_the_others_and_is_named_in_the_batch_record(client: FlaskClient) -> None:
    user = f"survivor-{uuid.uuid4().hex}"
    state = send(client, [{"user": user}, {"djt_fail": True, "nonce": user}])
    failing = "handler.testmodule.djt_fail_on_request"
    assert state["failed"] == [failing]
    (batch,) = state["batches"]
    record = client.get(f"/batch/{batch}").get_json()
    assert record["failed"] == [failing]
    failure = record["handlers"][failing]
    assert failure["ok"] is False and failure["dead_lettered"] == 1
    assert failure["error"].startswith("RuntimeError: asked to fail by event")
    others = {name: o for name, o in record["handlers"].items() if name != failing}
    assert len(others) >= 5 and all(o["ok"] for o in others.values())
    assert query(client, "djt_user_event_count", user=user) == 1


def test_events_from_a_python_logging_http_handler_are_accepted(client: FlaskClient, live_server: str) -> None:
    user = f"logger-{uuid.uuid4().hex}"
    host = live_server.removeprefix("http://")
    logger = logging.getLogger(f"lms.tracking.{user}")
    logger.propagate = False
    for method in ("POST", "GET"):
        handler = logging.handlers.HTTPHandler(host, "/event", method=method)
        logger.addHandler(handler)
        logger.warning(json.dumps({"user": user, "event_type": "page_view", "via": method}))
        logger.removeHandler(handler)
    wait_for(lambda: query(client, "djt_user_event_count", user=user) == 2, what="both logged events to be counted")
