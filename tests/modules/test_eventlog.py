"""The eventlog module end to end, and the generated datasets every module test checks against.

The helpers here are shared by ``tests/modules/test_*.py``: ``dataset(client, insights, fmt)``
generates a small seeded course (``tasks.synthetic``) in one format, gives it a course id
of its own for this test run, posts it through ``POST /event`` in batches, waits until
every handler ran, then redelivers a part of it straight to the analytics modules'
handlers (at-least-once delivery, past the dedupe) so that every figure a module test
checks is also checked for idempotency. ``facts(dataset)`` parses the raw JSON lines
*independently* of the data layer and the modules: the expectations come from it.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest
from flask.testing import FlaskClient
from pymongo.database import Database

from modules import eventlog
from tasks.app import Insights
from tasks.authoring.event_ids import event_id
from tasks.authoring.events import Event
from tasks.synthetic import Config, generate_files
from tests.conftest import send, wait_for, wait_handled

# The xAPI course is posted too in the full run; the fast one (-m "not slow") posts the Open edX one only.
FORMATS = ["openedx", pytest.param("xapi", marks=pytest.mark.slow)]
CONFIG = Config(courses=1, students=12, days=3, seed=7)
COURSE_KEY = "DemoX+DS101+2026_T4"  # the generator's first course: course-v1:<key>, block-v1:<key>+...
BATCH = 400  # events per POST /event
REDELIVERED = 250  # events sent a second time to the analytics handlers
HANDLERS = [
    "eventlog.dump_to_db",
    "activity.record_activity",
    "video.record_video_events",
    "problems.record_submissions",
]


@dataclass
class Dataset:
    """One generated course, as posted: its format, course id and raw events."""

    fmt: str
    course: str
    events: list[dict[str, Any]]


_POSTED: dict[str, Dataset] = {}


def dataset(client: FlaskClient, insights: Insights, fmt: str) -> Dataset:
    """The session's dataset in ``fmt``: generated and posted (then partly redelivered) once."""
    if fmt not in _POSTED:
        data = generate(fmt)
        post(client, data.events)
        redeliver(insights, data.events[:REDELIVERED])
        _POSTED[fmt] = data
    return _POSTED[fmt]


def generate(fmt: str) -> Dataset:
    """Generate the course in ``fmt`` with a course key (and statement ids) unique to this run."""
    key = f"{COURSE_KEY}{fmt}{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        (path,) = generate_files(CONFIG, folder, formats=[fmt])
        text = Path(path).read_text(encoding="utf-8").replace(COURSE_KEY, key)
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    for event in events:
        if "id" in event:  # xAPI statement ids: unique to this run too
            event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, key + event["id"]))
    return Dataset(fmt, f"course-v1:{key}", events)


def post(client: FlaskClient, events: list[dict[str, Any]]) -> None:
    """POST events in batches of ``BATCH``, then wait until every handler has run on all of them."""
    receipts = []
    for start in range(0, len(events), BATCH):
        response = client.post("/event", json=events[start : start + BATCH])
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["rejected"] == []
        receipts.append(response.get_json()["receipt"])
    for receipt in receipts:
        assert wait_handled(client, receipt)["failed"] == []


def redeliver(insights: Insights, events: list[dict[str, Any]]) -> None:
    """Send events again straight to the analytics handlers (no dedupe), as a redelivery would."""
    batch = insights.dispatch_events(events, insights.resolve_handlers(HANDLERS))

    def done() -> dict[str, Any] | None:
        record = insights.store.get(batch)
        return record if record and record["state"] == "done" else None

    assert wait_for(done, what="the redelivered batch")["failed"] == []


# Independent reading of the raw events ----------------------------------------------------
OPENEDX_VIDEO = {
    "load_video": "loaded",
    "play_video": "played",
    "pause_video": "paused",
    "seek_video": "seeked",
    "stop_video": "stopped",
}
XAPI_VERBS = {
    "https://w3id.org/xapi/video/verbs/initialized": "loaded",
    "https://w3id.org/xapi/video/verbs/played": "played",
    "https://w3id.org/xapi/video/verbs/paused": "paused",
    "https://w3id.org/xapi/video/verbs/seeked": "seeked",
    "http://adlnet.gov/expapi/verbs/completed": "stopped",
    "http://adlnet.gov/expapi/verbs/answered": "answered",
}
EXT = "https://w3id.org/xapi/video/extensions/"
FACT_COLUMNS = [
    "agent",
    "course",
    "timestamp",
    "verb",
    "object",
    "position",
    "seek_from",
    "seek_to",
    "duration",
    "success",
    "score",
    "max_score",
    "attempt",
]


def openedx_facts(event: dict[str, Any]) -> dict[str, Any]:
    """What an Open edX tracking-log event says (the nested ``event`` of browser events is a JSON string)."""
    inner = event.get("event")
    inner = json.loads(inner) if isinstance(inner, str) else inner or {}
    row = {"agent": event["username"], "course": event["context"]["course_id"], "timestamp": event["time"]}
    verb = OPENEDX_VIDEO.get(event["event_type"])
    if verb:
        row |= {"verb": verb, "object": inner["id"], "position": inner.get("currentTime")}
        row |= {"seek_from": inner.get("old_time"), "seek_to": inner.get("new_time"), "duration": inner.get("duration")}
    elif event["event_type"] == "problem_check" and event["event_source"] == "server":
        row |= {"verb": "answered", "object": inner["problem_id"], "success": inner["success"] == "correct"}
        row |= {"score": inner["grade"], "max_score": inner["max_grade"], "attempt": inner["attempts"]}
    return row


def xapi_facts(statement: dict[str, Any]) -> dict[str, Any]:
    """What an xAPI statement says (objects of videos and problems are ``.../xblock/<usage key>``)."""
    parent = statement["context"]["contextActivities"]["parent"][0]["id"]
    row = {
        "agent": statement["actor"]["account"]["name"],
        "course": unquote(parent.split("/courses/", 1)[1]),
        "timestamp": statement["timestamp"],
    }
    verb = XAPI_VERBS.get(statement["verb"]["id"])
    object_id = statement["object"]["id"]
    if verb is None or "/xblock/" not in object_id:
        return row
    result = statement.get("result", {})
    extensions = result.get("extensions", {})
    row |= {"verb": verb, "object": unquote(object_id.split("/xblock/", 1)[1])}
    if verb == "answered":
        row |= {"success": result["success"], "score": result["score"]["raw"], "max_score": result["score"]["max"]}
        row["attempt"] = extensions["http://id.tincanapi.com/extension/attempt-id"]
    else:
        row |= {"position": extensions.get(EXT + "time"), "seek_from": extensions.get(EXT + "time-from")}
        row |= {"seek_to": extensions.get(EXT + "time-to")}
        row["duration"] = statement["context"].get("extensions", {}).get(EXT + "length")
    return row


def facts(data: Dataset) -> pd.DataFrame:
    """One row per raw event: agent, course, timestamp (UTC), verb (video/problem events only), object, result."""
    read = openedx_facts if data.fmt == "openedx" else xapi_facts
    frame = pd.DataFrame([read(event) for event in data.events], columns=FACT_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    return frame


# HTTP helpers ------------------------------------------------------------------------------
def get_query(client: FlaskClient, name: str, **params: Any) -> Any:
    """GET a query's JSON result."""
    response = client.get(f"/query/{name}", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def assert_figure_view(client: FlaskClient, module: str, name: str, **params: Any) -> bytes:
    """GET a view that returns a figure: an ``<img>`` of a PNG in the module's file store, served."""
    html = client.get(f"/view/{name}", query_string=params).get_data(as_text=True)
    match = re.fullmatch(rf'<img src="(/fs/{module}/views/{name}-[0-9a-f]+\.png)" alt="{name}">', html)
    assert match, html
    image = client.get(match.group(1))
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n") and len(image.data) > 5000
    return image.data


# The eventlog module -----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_event_is_stored_once_as_it_arrived(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    log = insights.services.mongodb("eventlog")["event_log"]
    ids = [event_id(event) for event in data.events]
    stored = {doc["_id"]: doc["event"] for doc in log.find({"_id": {"$in": ids}})}
    assert len(stored) == len(set(ids)) == len(data.events)  # the redelivered ones too: once each
    assert all(stored[i] == event for i, event in zip(ids, data.events, strict=True))


ODD = [{"$where": "1"}, {"big": 2**70}, {"nul\u0000key": {"a.b": 1}}]  # not storable as BSON documents as is


def test_recent_events_are_the_newest_first(client: FlaskClient) -> None:
    tag = uuid.uuid4().hex
    events = [{"username": f"recent-{tag}", "event_type": "/courses/", "n": n, **ODD[n]} for n in range(3)]
    for event in events:  # one at a time: each is received after the one before
        send(client, event)
        time.sleep(0.01)
    # Through the pipeline, whose log every test writes to: this test's events, newest first.
    recent = get_query(client, "recent_events", limit=1000)
    assert [event for event in recent if event.get("username") == f"recent-{tag}"] == events[::-1]


def test_recent_events_are_given_up_to_the_limit(own_database: Database[Any]) -> None:
    """The module's handler and query as plain functions, on a database of the test's own: exactly
    the newest ``limit`` events, whatever other tests send meanwhile."""
    raw = [{"event_type": "limit-test", "n": n, **(ODD[n] if n < len(ODD) else {})} for n in range(25)]
    received = [Event(event, id=f"e{n}", received=1000.0 + n) for n, event in enumerate(raw)]  # in this order
    eventlog.dump_to_db(mongodb=own_database, events=received)
    newest = raw[::-1]
    assert eventlog.recent_events(mongodb=own_database, limit=3) == newest[:3]
    assert eventlog.recent_events(mongodb=own_database, limit="2") == newest[:2]  # as a query string gives it
    assert eventlog.recent_events(mongodb=own_database, limit=0) == []
    assert eventlog.recent_events(mongodb=own_database) == newest[:20]  # the default
    assert eventlog.recent_events(mongodb=own_database, limit=5000) == newest  # at most 1000: all 25 here
