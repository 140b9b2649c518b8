"""Event intake (web/intake.py), mostly over real HTTP connections: request bodies as servers
hand them to the app, and what the app answers."""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.ops.embedded import free_port
from tasks.pipeline.parsing import MAX_LISTED_REJECTIONS
from tests.conftest import Pipeline, serving, wait_for
from tests.faults.harness import Web
from web.app import create_app

SMALL_LIMIT = 64 * 1024  # request-size limit of the small-limit servers below


def post_chunked(
    url: str, body: bytes, headers: dict[str, str] | None = None, chunk: int = 64 * 1024
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to ``url`` with ``Transfer-Encoding: chunked`` (no Content-Length) over a
    raw socket; returns the status and the JSON answer.

    The body goes out from a thread while this one reads the answer: a server that refuses
    the body answers before reading all of it and closes, which ends the sending."""
    parts = urlsplit(url)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in {"Content-Type": "application/json", **(headers or {})}.items()]
    connection = socket.create_connection((parts.hostname, parts.port), timeout=60)

    def send() -> None:
        try:
            connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for start in range(0, len(body), chunk):
                part = body[start : start + chunk]
                connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            connection.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered early and closed
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = json.loads(response.read())
    finally:
        sender.join(timeout=60)
        connection.close()
    return response.status, answer


def json_lines(run: str, size: int) -> bytes:
    """JSON lines of events tagged ``run``, at least ``size`` bytes in all."""
    lines, total, n = [], 0, 0
    while total < size:
        line = json.dumps({"run": run, "n": n, "pad": "x" * 60}).encode()
        lines.append(line)
        total += len(line) + 1
        n += 1
    return b"\n".join(lines) + b"\n"


def exactly(run: str, size: int) -> bytes:
    """A JSON array of events tagged ``run`` that is exactly ``size`` bytes long."""
    events: list[dict[str, Any]] = []
    while len(json.dumps([*events, {"run": run, "n": len(events), "pad": ""}])) < size - 100:
        events.append({"run": run, "n": len(events), "pad": ""})
    events.append({"run": run, "n": len(events), "pad": ""})
    events[-1]["pad"] = "x" * (size - len(json.dumps(events)))
    body = json.dumps(events).encode()
    assert len(body) == size
    return body


@pytest.fixture(scope="module")
def small_limit(settings: Settings, worker: Pipeline) -> Iterator[str]:
    """The web app with a 64 KiB request limit, served over real HTTP by threaded werkzeug."""
    app = create_insights(dataclasses.replace(settings, max_request_bytes=SMALL_LIMIT))
    with serving(app) as url:
        yield url
    app.services.close()


@pytest.fixture(scope="module")
def gunicorn(settings: Settings, worker: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app with a 64 KiB request limit under gunicorn, as in production (Procfile)."""
    limited = dataclasses.replace(settings, max_request_bytes=SMALL_LIMIT, web_port=free_port())
    web = Web(limited, Path(tmp_path_factory.mktemp("gunicorn")) / "gunicorn.log").start(timeout=60)
    yield web.url
    web.stop()


def delivered(insights: Insights, run: str) -> dict[str, int]:
    """Per event id of a run: how often the idempotent test handler was given it."""
    client = create_app(insights).test_client()
    result: dict[str, int] = client.get("/query/delivered", query_string={"run": run}).get_json()
    return result


def handled(url: str, receipt: str) -> dict[str, Any]:
    """Wait until the events of ``receipt`` are handled (asked over HTTP); returns the receipt's state."""

    def done() -> dict[str, Any] | None:
        connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
        try:
            connection.request("GET", f"/receipt/{receipt}")
            state: dict[str, Any] = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        return state if state.get("state") == "done" else None

    return wait_for(done, timeout=60, what=f"receipt {receipt} to be handled")


# Request size -------------------------------------------------------------------------------------
def test_chunked_body_over_the_limit_is_413_and_nothing_is_accepted(live_server: str, insights: Insights) -> None:
    run = uuid.uuid4().hex
    body = json_lines(run, insights.settings.max_request_bytes + 1024 * 1024)
    status, answer = post_chunked(f"{live_server}/event", body)
    assert status == 413, answer
    assert answer["status"] == 413 and "larger than" in answer["error"] and "receipt" not in answer

    marker = {"run": run, "n": "marker"}
    status, answer = post_chunked(f"{live_server}/event", json.dumps(marker).encode())
    assert status == 202 and answer["accepted"] == 1
    handled(live_server, answer["receipt"])
    assert len(delivered(insights, run)) == 1  # only the marker: no part of the big body got in


@pytest.mark.parametrize("server", ["werkzeug", pytest.param("gunicorn", marks=pytest.mark.slow)])
def test_a_chunked_body_is_held_to_the_limit_to_the_byte(
    request: pytest.FixtureRequest, insights: Insights, server: str
) -> None:
    url = request.getfixturevalue("small_limit" if server == "werkzeug" else "gunicorn")
    run = uuid.uuid4().hex
    body = exactly(run, SMALL_LIMIT)
    status, answer = post_chunked(f"{url}/event", body)
    assert status == 202, answer
    assert answer["accepted"] == len(json.loads(body)) and answer["rejected"] == []
    handled(url, answer["receipt"])
    assert len(delivered(insights, run)) == len(json.loads(body))  # every event, none cut off

    over = exactly(uuid.uuid4().hex, SMALL_LIMIT + 1)
    status, answer = post_chunked(f"{url}/event", over)
    assert status == 413 and "larger than" in answer["error"], answer
    lines = json_lines(uuid.uuid4().hex, 4 * SMALL_LIMIT)
    status, answer = post_chunked(f"{url}/event", lines)
    assert status == 413 and "larger than" in answer["error"], answer


@pytest.mark.parametrize("server", ["werkzeug", pytest.param("gunicorn", marks=pytest.mark.slow)])
def test_a_chunked_gzip_body_is_held_to_the_limit_after_decoding(request: pytest.FixtureRequest, server: str) -> None:
    url = request.getfixturevalue("small_limit" if server == "werkzeug" else "gunicorn")
    bomb = gzip.compress(json_lines(uuid.uuid4().hex, 4 * SMALL_LIMIT))
    assert len(bomb) < SMALL_LIMIT
    status, answer = post_chunked(f"{url}/event", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed body is larger than" in answer["error"], answer


# Unicode ------------------------------------------------------------------------------------------
def test_an_event_with_a_lone_surrogate_is_rejected_by_index_and_recent_events_still_answers(
    live_server: str, insights: Insights
) -> None:
    run = uuid.uuid4().hex
    body = f'[{{"run": "{run}", "n": 0}}, {{"run": "{run}", "n": 1, "name": "\\ud800"}}, '
    body += f'{{"run": "{run}", "n": 2, "emoji": "\\ud83d\\ude00"}}]'
    status, answer = post_chunked(f"{live_server}/event", body.encode())
    assert status == 202, answer
    assert answer["accepted"] == 2 and [r["index"] for r in answer["rejected"]] == [1]
    assert "lone surrogate" in answer["rejected"][0]["error"]
    handled(live_server, answer["receipt"])
    assert len(delivered(insights, run)) == 2

    client = create_app(insights).test_client()
    recent = client.get("/query/recent_events", query_string={"limit": 1000})  # others' events may be newer
    assert recent.status_code == 200, recent.get_json()
    mine = [event for event in recent.get_json() if event.get("run") == run]
    assert sorted(event["n"] for event in mine) == [0, 2]
    assert next(event for event in mine if event["n"] == 2)["emoji"] == "\U0001f600"


# Answers ------------------------------------------------------------------------------------------
def test_an_event_request_refused_item_by_item_answers_with_less_than_it_was_sent(client: FlaskClient) -> None:
    body = b'[{"user":"amplifier","k":"' + uuid.uuid4().hex.encode() + b'"}' + b",1" * 128 * 1024 + b"]"
    response = client.post("/event", data=body, content_type="application/json")
    assert response.status_code == 202
    sent, answered = len(body), len(response.data)
    assert answered <= sent, f"a {sent} byte request was answered with {answered} bytes"
    answer = response.get_json()
    assert answer["accepted"] == 1 and answer["rejected_count"] == 128 * 1024
    assert [r["index"] for r in answer["rejected"]] == list(range(1, MAX_LISTED_REJECTIONS + 1))
    assert answered < 64 * 1024  # a small bound, whatever the body
