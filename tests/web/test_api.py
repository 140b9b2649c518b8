"""The HTTP API's contract: status codes, JSON bodies, result types, schema."""

from __future__ import annotations

import dataclasses
import http.client
import json
import uuid

import pytest
from flask.testing import FlaskClient

from config.settings import Queues, Settings
from tasks.app import Insights, create_insights
from tasks.errors import ArgumentError
from tests.conftest import send, wait_handled
from web.app import create_app


def error_of(response) -> str:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert isinstance(body, dict) and "error" in body, response.get_data(as_text=True)
    assert body["status"] == response.status_code
    return body["error"]


def test_unknown_names_are_404(client: FlaskClient) -> None:
    for path in ("/query/no_such_query", "/view/no_such_view"):
        response = client.get(path)
        assert response.status_code == 404
        assert "no_such" in error_of(response)


def test_private_names_are_refused(client: FlaskClient) -> None:
    response = client.get("/query/_secret")
    assert response.status_code == 403
    assert "private" in error_of(response)


def test_a_missing_argument_is_named(client: FlaskClient) -> None:
    response = client.get("/query/djt_user_event_count")
    assert response.status_code == 400
    assert "'user'" in error_of(response)


def test_an_unexpected_argument_is_named(client: FlaskClient) -> None:
    response = client.get("/query/djt_event_count", query_string={"colour": "red"})
    assert response.status_code == 400
    assert "'colour'" in error_of(response)


def test_extra_arguments_reach_params(client: FlaskClient) -> None:
    response = client.post("/query/echo", json={"greeting": "hi", "course": "c1", "mongodb": "injected names win"})
    assert response.get_json() == {"greeting": "hi", "params": {"course": "c1"}}
    response = client.post("/query/echo", data={"page": "2"})
    assert response.get_json() == {"greeting": "hello", "params": {"page": "2"}}


def test_a_json_body_must_be_an_object(client: FlaskClient) -> None:
    response = client.post("/query/echo", data="[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert "object" in error_of(response)


def test_numpy_pandas_and_datetime_results_reach_clients_as_json(client: FlaskClient) -> None:
    assert client.get("/query/grades_array?course=abc").get_json() == [[3, 4, 5], [6, 7, 8]]
    assert client.get("/query/grades_frame?course=c").get_json() == [
        {"student": "a", "grade": 0.5, "when": "2026-01-01T10:00:00", "course": "c"},
        {"student": "b", "grade": None, "when": "2026-01-02T11:30:00", "course": "c"},
    ]
    assert client.get("/query/grades_series").get_json() == {"a": 3, "b": 4}
    assert client.get("/query/moment").get_json() == "2026-11-25T12:00:00+00:00"
    assert client.get("/query/mean_grade?course=abc").get_json() == 5.5


def test_a_failing_view_is_a_json_error_without_traceback(client: FlaskClient) -> None:
    response = client.get("/view/broken_view")
    assert response.status_code == 500
    message = error_of(response)
    assert "ValueError: this view is broken on purpose" in message
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_result_that_does_not_come_in_time_is_504(client: FlaskClient) -> None:
    app = client.application.extensions["insights"]
    impatient = dataclasses.replace(app.settings, result_timeout=0.3)
    slow_client = create_app(create_insights(impatient)).test_client()
    response = slow_client.get("/query/sleepy?seconds=2")
    assert response.status_code == 504
    assert "did not finish within 0.3 s" in error_of(response)


def test_a_query_on_a_queue_no_worker_consumes_times_out(client: FlaskClient, settings: Settings) -> None:
    orphan = dataclasses.replace(settings, result_timeout=0.5, queues=Queues(queries="nobody-listens"))
    response = create_app(create_insights(orphan)).test_client().get("/query/djt_event_count")
    assert response.status_code == 504


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "empty"),
        ("{not json", "not JSON"),
        ("[1, 2]", "item 0 is a number"),
        ('["oops", 3]', "item 0 is not valid JSON"),
        ('{"a": \n{"b": \n', "line 1"),
        (b"\xff\xfe", "UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[]", "no events"),
    ],
)
def test_malformed_events_are_400_with_the_reason(client: FlaskClient, body: str | bytes, message: str) -> None:
    response = client.post("/event", data=body, content_type="application/json")
    assert response.status_code == 400
    assert message in error_of(response)


@pytest.mark.parametrize(
    ("body", "accepted", "rejected"),
    [
        ('[{"ok": 1}, 2, "{\\"ok\\": 3}", "oops", [], {"ok": 4}]', 3, [1, 3, 4]),
        ('{"ok": 1}\n\n{"b": \n[7]\n{"ok": 2}\n', 2, [1, 2]),
    ],
)
def test_valid_events_are_accepted_and_invalid_ones_reported_by_index(
    client: FlaskClient, body: str, accepted: int, rejected: list[int]
) -> None:
    response = client.post("/event", data=body, content_type="application/json")
    assert response.status_code == 202
    answer = response.get_json()
    assert answer["accepted"] == accepted
    assert [r["index"] for r in answer["rejected"]] == rejected
    assert all(r["error"] for r in answer["rejected"])
    wait_handled(client, answer["receipt"])


def test_an_oversized_request_is_413(client: FlaskClient) -> None:
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    response = client.post("/event", data=b"[" + b" " * limit + b"]", content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)


def test_unknown_batch_is_404(client: FlaskClient) -> None:
    assert client.get("/batch/0123").status_code == 404


def test_schema_lists_views_queries_and_handlers(client: FlaskClient) -> None:
    entries = {(e["class"], e["name"]): e for e in client.get("/schema").get_json()}
    per_user = entries[("query", "djt_user_event_count")]
    assert per_user["category"] == "per user"
    assert per_user["parameters"] == ["user"]
    assert per_user["doc"].startswith("Number of events seen from one user")
    assert per_user["task"] == "query.djt_user_event_count"
    assert per_user["queue"] == "queries"
    assert entries[("query", "djt_event_count")]["category"] == "global"
    assert entries[("query", "djt_three_name")]["aliases"] == ["edx_djt_three_name", "edx.djt_three_name"]
    assert entries[("view", "djt_fake_user_count")]["queue"] == "views"
    assert entries[("handler", "djt_event_count_event")]["task"] == "handler.testmodule.djt_event_count_event"
    assert entries[("handler", "djt_event_count_event")]["queue"] == "events"


def test_schema_as_html_escapes_docs(client: FlaskClient) -> None:
    response = client.get("/schema?f=html")
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "djt_user_event_count" in page and "per user" in page


def test_event_properties_are_published(client: FlaskClient) -> None:
    properties = client.get("/event_properties").get_json()
    agent = next(p for p in properties if p["name"] == "djt_agent")
    assert "agent" in agent["doc"]


def test_file_names_cannot_leave_the_module_store(client: FlaskClient) -> None:
    assert client.get("/fs/testmodule/../../etc/passwd").status_code in (400, 404)
    assert client.get("/fs/testmodule/%2e%2e/secret").status_code in (400, 404)
    assert client.get("/fs/nosuchmodule/a.txt").status_code == 404


def test_events_are_json_even_with_other_content_types(client: FlaskClient) -> None:
    send(client, json.dumps({"a": 1}), content_type="text/plain")


def test_mongodb_operators_in_arguments_are_refused(client: FlaskClient) -> None:
    response = client.post("/query/djt_user_event_count", json={"user": {"$gt": ""}})
    assert response.status_code == 400 and "'$gt'" in response.get_json()["error"]
    chain = client.post("/chain", json={"steps": [{"query": "total", "args": {"values": [{"$where": "1"}]}}]})
    assert chain.status_code == 400


def test_an_object_argument_is_400_not_a_database_error(client: FlaskClient) -> None:
    response = client.post("/query/djt_user_event_count", json={"user": {"a": 1}})
    assert response.status_code == 400
    assert (
        error_of(response)
        == "argument 'user' is an object; send a plain value (the parameter is not annotated as a dict or Mapping)"
    )


def test_a_lone_surrogate_in_an_argument_is_400(client: FlaskClient) -> None:
    for body in ('{"user": "ada\\ud800"}', '{"user": ["\\udc00"]}'):
        response = client.post("/query/djt_user_event_count", data=body, content_type="application/json")
        assert response.status_code == 400
        assert "not valid Unicode" in error_of(response)


def test_a_huge_argument_name_is_refused_without_being_echoed(client: FlaskClient) -> None:
    response = client.post("/query/djt_event_count", json={"x" * 1_000_000: 1})
    assert response.status_code == 400
    assert len(response.get_data()) < 500 and "longer than 100 characters" in error_of(response)


def test_a_database_error_is_not_shown_to_the_client(client: FlaskClient) -> None:
    send(client, {"user": "db-error"})  # the collection exists: nx-27017 then fails to bind a list
    response = client.post("/query/djt_user_event_count", json={"user": ["a", "list"]})  # nx-27017 cannot bind a list
    assert response.status_code == 500
    assert error_of(response) == (
        "query 'djt_user_event_count' failed: a database error (OperationFailure); the worker log has the details"
    )


@pytest.mark.parametrize("path", ["//schema", "/static//dashboard.js", "/schema//", "/fs//grades//x.png", "/"])
def test_no_redirect_names_the_host_header(live_server: str, path: str) -> None:
    connection = http.client.HTTPConnection(live_server.removeprefix("http://"), timeout=10)
    connection.request("GET", path, headers={"Host": "evil.example"})
    response = connection.getresponse()
    connection.close()
    assert "evil.example" not in (response.getheader("Location") or "")
    assert response.status in (200, 404), response.status


def test_a_folder_of_a_module_store_is_404(client: FlaskClient, insights: Insights) -> None:
    folder = f"folder-{uuid.uuid4().hex}"
    with insights.services.fs("grades").open(f"{folder}/inner/plot.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
    for path in (folder, f"{folder}/", f"{folder}/inner", f"{folder}/inner/"):
        response = client.get(f"/fs/grades/{path}")
        assert response.status_code == 404 and "no file" in error_of(response), path
    assert client.get(f"/fs/grades/{folder}/inner/plot.png").status_code == 200


def test_a_stored_file_name_with_a_carriage_return_is_not_a_server_error(
    client: FlaskClient, insights: Insights
) -> None:
    store = insights.services.fs("testmodule")
    name = f"cr-{uuid.uuid4().hex[:6]}\rname.txt"
    with pytest.raises(ArgumentError, match="control character"):  # no module can write such a name now
        store.open(name, "w")
    scratch = store.backend.scratch()
    scratch.write_text("hello")
    store.backend.commit(name, scratch)  # one written before they were refused
    try:
        assert store.backend.info(name) is not None
        for encoded in (name.replace("\r", "%0D"), name.replace("\r", "%1B")):
            response = client.get("/fs/testmodule/" + encoded)
            assert response.status_code == 404 and "no file" in error_of(response), response.get_json()
        assert client.get("/fs/testmodule/" + name.replace("\r", "%0A")).status_code == 404  # no route matches
    finally:
        store.backend.delete(name, recursive=False)


def store_files(insights: Insights, files: dict[str, bytes]) -> str:
    """Write ``files`` into a fresh folder of the grades module's store; returns the folder's URL."""
    folder = f"stored-{uuid.uuid4().hex}"
    store = insights.services.fs("grades")
    for name, data in files.items():
        with store.open(f"{folder}/{name}", "wb") as f:
            f.write(data)
    return f"/fs/grades/{folder}"


def test_stored_html_is_served_as_an_attachment_with_csp_sandbox(client: FlaskClient, insights: Insights) -> None:
    files = {
        "page.html": b"<script src='script.js'></script>",
        "page.HTM": b"<script>alert(1)</script>",
        "page.xhtml": b"<html xmlns='http://www.w3.org/1999/xhtml'><script>alert(1)</script></html>",
        "image.svg": b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        "script.js": b"alert(1)",
        "style.css": b"body { background: url(//evil.example) }",
        "notes.txt": b"plain text",
        "grades.csv": b"a,b\n1,2\n",
        "no-extension": b"<script>alert(1)</script>",
        "plot.png.html": b"<script>alert(1)</script>",
    }
    base = store_files(insights, files)
    for name, data in files.items():
        response = client.get(f"{base}/{name}")
        assert response.status_code == 200 and response.data == data, name
        assert response.mimetype == "application/octet-stream", name
        assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
        assert response.headers["Content-Security-Policy"] == "sandbox", name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name


def test_stored_raster_images_are_served_inline_with_their_image_type_and_csp_sandbox(
    client: FlaskClient, insights: Insights
) -> None:
    types = {"a.png": "image/png", "b.jpg": "image/jpeg", "c.JPEG": "image/jpeg", "d.gif": "image/gif"}
    types["e.webp"] = "image/webp"
    base = store_files(insights, dict.fromkeys(types, b"image bytes"))
    for name, mimetype in types.items():
        response = client.get(f"{base}/{name}")
        assert response.status_code == 200 and response.mimetype == mimetype, name
        assert "attachment" not in response.headers.get("Content-Disposition", ""), name
        assert response.headers["Content-Security-Policy"] == "sandbox", name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
    missing = client.get(f"{base}/missing.html")
    assert missing.status_code == 404 and missing.headers["Content-Security-Policy"] == "sandbox"


def test_a_value_that_does_not_convert_is_400_naming_it(client: FlaskClient) -> None:
    response = client.get("/query/hours_in?days=abc")  # the module's own float() raised: 500
    assert response.status_code == 400
    assert error_of(response) == "argument 'days' got 'abc': expected int"
    for query_string in ("count=true", "days=nan", "flag=maybe", f"count={2**64}"):
        response = client.get(f"/query/typed_args?{query_string}")
        assert response.status_code == 400, query_string
        assert f"argument '{query_string.split('=')[0]}'" in error_of(response)


def test_query_string_form_and_json_values_reach_functions_converted(client: FlaskClient) -> None:
    assert client.get("/query/hours_in?days=3").get_json() == {"days": 3, "type": "int", "hours": 72.0}
    expected = {
        "days": [2.5, "float"],
        "count": [4, "int"],
        "flag": [True, "bool"],
        "label": ["7", "str"],
        "ids": [None, "NoneType"],
    }
    text = {"days": "2.5", "count": "4", "flag": "on", "label": "7"}
    assert client.get("/query/typed_args", query_string=text).get_json() == expected
    assert client.post("/query/typed_args", data=text).get_json() == expected
    assert client.post("/query/typed_args", json=text).get_json() == expected  # JSON text converts too
    typed = {"days": 2.5, "count": 4, "flag": True, "label": "7", "ids": [1, "2"]}
    assert client.post("/query/typed_args", json=typed).get_json() == {**expected, "ids": [[1, 2], "list"]}
    response = client.post("/query/typed_args", json={"count": True})
    assert response.status_code == 400 and "'count'" in error_of(response)
    response = client.post("/query/typed_args", data='{"days": NaN}', content_type="application/json")
    assert response.status_code == 400 and "'days'" in error_of(response)


def test_chain_step_arguments_and_fed_results_are_converted(client: FlaskClient) -> None:
    steps = [{"query": "hours_in", "args": {"days": "2"}}]
    assert client.post("/chain", json={"steps": steps}).get_json() == {"days": 2, "type": "int", "hours": 48.0}
    response = client.post("/chain", json={"steps": [{"query": "hours_in", "args": {"days": "two"}}]})
    assert response.status_code == 400
    assert "argument 'days' got 'two': expected int" in error_of(response)
    fed = [{"query": "typed_args", "args": {"count": "1"}}, {"query": "hours_in", "into": "days"}]
    response = client.post("/chain", json={"steps": fed})  # a dict fed to an int parameter
    assert response.status_code == 400
    assert "'days'" in error_of(response)


def test_schema_shows_defaults_and_types(client: FlaskClient) -> None:
    entries = {(e["class"], e["name"]): e for e in client.get("/schema").get_json()}
    arguments = {a["name"]: a for a in entries[("query", "typed_args")]["arguments"]}
    assert arguments["days"] == {"name": "days", "type": "float", "required": False, "default": 7.0}
    assert arguments["label"] == {"name": "label", "type": "str | None", "required": False, "default": None}
    assert arguments["ids"]["type"] == "list[int] | None"
    assert entries[("query", "hours_in")]["arguments"] == [
        {"name": "days", "type": "int", "required": False, "default": 7}
    ]
    assert entries[("query", "djt_user_event_count")]["arguments"] == [{"name": "user", "type": None, "required": True}]
    assert entries[("query", "hours_in")]["signature"] == "hours_in(days=7)"
    page = client.get("/schema?f=html").get_data(as_text=True)
    assert "hours_in(days=7)" in page


def test_private_functions_are_hidden_from_schema_and_refused_everywhere(client: FlaskClient) -> None:
    names = [e["name"] for e in client.get("/schema").get_json()]
    assert "_private_total" not in names and names
    assert not [n for e in client.get("/schema").get_json() for n in e["aliases"] if n.startswith("_")]
    assert "_private_total" not in client.get("/schema?f=html").get_data(as_text=True)
    for path in ("/query/_private_total", "/run/query/_private_total"):
        assert client.post(path, json={"values": [1]}).status_code == 403
    for steps in (
        [{"query": "_private_total", "args": {"values": [1]}}],
        [{"query": "hours_in"}, {"group": [{"query": "_private_total"}]}],
    ):
        response = client.post("/chain", json={"steps": steps})
        assert response.status_code == 403
        assert "private" in error_of(response)
