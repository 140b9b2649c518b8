"""/health: reachability of broker, Redis and MongoDB, queue lengths and intake backlog."""

from __future__ import annotations

import dataclasses
import time

import pytest
from flask.testing import FlaskClient

from config.settings import Settings
from tasks.app import create_insights
from tasks.ops.embedded import free_port
from web.app import create_app


def test_health_reports_every_dependency_and_the_queues(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    report = response.get_json()
    assert report["status"] == "ok"
    # Each dependency answered: no error, and how long its probe took.
    assert {name: sorted(check) for name, check in report["checks"].items()} == {
        "broker": ["ms", "ok"], "redis": ["ms", "ok"], "mongo": ["ms", "ok"]
    }  # fmt: skip
    assert all(check["ok"] is True and isinstance(check["ms"], float) for check in report["checks"].values())
    assert set(report["queues"]) == {"views", "queries", "events", "reports", "batch"}
    assert all(isinstance(n, int) for n in report["queues"].values())
    assert set(report["intake"]) == {"backlog", "oldest_seconds", "max_seconds", "ok"}  # values: the tests below
    assert report["intake"]["ok"] and report["intake"]["max_seconds"] == 60
    assert report["reasons"] == []
    assert isinstance(report["dead_letters"], int)


@pytest.mark.slow  # waits out the 2 s probe of an unreachable MongoDB
def test_health_is_503_naming_what_is_down(settings: Settings) -> None:
    nowhere = f"mongodb://127.0.0.1:{free_port()}"
    broken = create_app(create_insights(dataclasses.replace(settings, mongo_url=nowhere))).test_client()
    response = broken.get("/health")
    assert response.status_code == 503
    report = response.get_json()
    assert report["status"] == "unavailable"
    assert report["checks"]["mongo"]["ok"] is False and report["checks"]["mongo"]["error"]
    assert report["checks"]["redis"]["ok"] and report["checks"]["broker"]["ok"]
    assert len(report["reasons"]) == 1 and report["reasons"][0].startswith("mongo unreachable: ")


def test_the_oldest_waiting_intake_entry_has_an_age(settings: Settings) -> None:
    assert settings.redis_url is not None
    unread = dataclasses.replace(settings, redis_url=settings.redis_url.rsplit("/", 1)[0] + "/3")  # no batcher
    app = create_insights(unread)
    try:
        before = time.time()
        app.intake.submit([{"waiting": True}])
        report = create_app(app).test_client().get("/health").get_json()
        waited = time.time() - before
        assert report["intake"]["backlog"] == 1
        # Its age is the time since it was submitted: no more than this test waited (plus the
        # millisecond a stream entry id is truncated to, and the rounding to 3 decimals).
        assert report["intake"]["oldest_seconds"] <= waited + 0.002
        assert report["dead_letters"] == 0  # a database of its own: exactly none
    finally:
        app.services.redis.delete(app.intake.stream)
        app.services.close()


def test_health_is_503_when_the_oldest_intake_entry_waited_too_long(settings: Settings) -> None:
    assert settings.redis_url is not None
    unread = dataclasses.replace(  # a database of its own that no batcher reads
        settings, redis_url=settings.redis_url.rsplit("/", 1)[0] + "/5", health_max_backlog_age=0.5
    )
    app = create_insights(unread)
    client = create_app(app).test_client()
    try:
        assert client.get("/health").status_code == 200  # nothing waits yet
        app.intake.submit([{"waiting": True}])
        time.sleep(0.6)
        response = client.get("/health")
        assert response.status_code == 503
        report = response.get_json()
        assert report["status"] == "unavailable"
        assert all(check["ok"] for check in report["checks"].values())  # everything reachable: only the backlog
        assert report["intake"]["ok"] is False and report["intake"]["oldest_seconds"] > 0.5
        assert report["intake"]["max_seconds"] == 0.5
        [reason] = report["reasons"]
        assert reason.startswith("intake backlog:") and "INSIGHTS_HEALTH_MAX_BACKLOG_AGE" in reason
        app.services.redis.delete(app.intake.stream)
        assert client.get("/health").status_code == 200  # nothing waits any more
    finally:
        app.services.redis.delete(app.intake.stream)
        app.services.close()
