"""Quotas: a request rate per client, outstanding runs per client, runs nobody polls expire."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from config.settings import ROOT, Settings
from tasks.app import Insights, create_insights
from tasks.core.tokens import TokenStore
from tasks.ops.cli import process_commands
from tasks.ops.embedded import free_port
from tests.conftest import Pipeline, as_token, new_token, wait_for
from web.app import create_app


@pytest.fixture(scope="module")
def strict(settings: Settings, worker: Pipeline) -> Iterator[Insights]:
    """A deployment with auth on and tight quotas: 2 requests/s in bursts of 3, 2 runs, runs expire in 2 s."""
    app = create_insights(
        dataclasses.replace(settings, auth=True, rate_limit=2.0, rate_burst=3, max_runs=2, run_expires=2)
    )
    yield app
    app.services.close()


def test_a_client_beyond_its_rate_gets_429_with_retry_after_and_others_do_not(
    strict: Insights, client: FlaskClient
) -> None:
    # A cached memoized query: the web process answers it from Redis without a worker hop, so
    # six requests take milliseconds, far less than the half second a token takes to come back.
    cheap = f"/query/slow_total?course=rate-{uuid.uuid4().hex}&seconds=0"
    assert client.get(cheap).status_code == 200  # computed once, by a client without quotas
    tokens = strict.tokens
    app = create_app(strict).test_client()
    greedy, other = (as_token(app, new_token(tokens, "query:*")) for _ in range(2))
    statuses = [greedy.get(cheap).status_code for _ in range(6)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    refused = greedy.get(cheap)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "too many requests: at most 2/s" in refused.get_json()["error"]
    assert other.get(cheap).status_code == 200  # a client's quota is its own
    time.sleep(1.1)
    assert greedy.get(cheap).status_code == 200  # the bucket refills


def test_a_client_has_at_most_max_runs_outstanding(strict: Insights) -> None:
    tokens = strict.tokens
    client = as_token(create_app(strict).test_client(), new_token(tokens, "query:*"))
    started = [client.post("/run/query/djt_event_count") for _ in range(2)]
    assert [r.status_code for r in started] == [202, 202]
    time.sleep(1.1)  # stay within the rate; the third run is refused for the runs it has out
    refused = client.post("/run/query/djt_event_count")
    assert refused.status_code == 429 and "2 runs outstanding" in refused.get_json()["error"]
    task = started[0].get_json()["task"]
    wait_for(lambda: client.get(f"/result/{task}").get_json().get("state") == "done", what="the run to finish")
    assert client.post("/run/query/djt_event_count").status_code == 202  # a delivered run frees its place


def test_a_chain_counts_the_tasks_it_starts_against_the_clients_rate(strict: Insights) -> None:
    tokens = strict.tokens
    app = create_app(strict).test_client()
    client = as_token(app, new_token(tokens, "query:*"))
    steps = [{"group": [{"query": "djt_fake_user_count"}] * 20}, {"group": [{"query": "djt_readfile"}] * 20}]
    response = client.post("/chain", json={"steps": steps})
    assert response.status_code == 429, f"{response.status_code}: 40 tasks ran for a client allowed bursts of 3"
    assert "starts 40 tasks" in response.get_json()["error"] and "Retry-After" not in response.headers  # never fits

    three = [{"group": [{"query": "djt_fake_user_count"}] * 3}]
    assert as_token(app, new_token(tokens, "query:*")).post("/chain", json={"steps": three}).status_code == 200
    busy = as_token(app, new_token(tokens, "query:*"))
    assert busy.post("/run/query/djt_event_count").status_code == 202  # one task of its burst of 3 used
    refused = busy.post("/chain", json={"steps": three})  # 3 more: beyond the rate, nothing sent
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "too many requests" in refused.get_json()["error"]


@pytest.mark.slow  # waits out the runs' 2 s expiry
def test_a_run_nobody_polls_is_forgotten(strict: Insights) -> None:
    tokens = strict.tokens
    client = as_token(create_app(strict).test_client(), new_token(tokens, "query:*"))
    task = client.post("/run/query/djt_event_count").get_json()["task"]
    meta = f"celery-task-meta-{task}"
    wait_for(lambda: strict.services.redis.exists(meta), what="the run's result to be stored")
    time.sleep(2.1)
    assert client.get(f"/result/{task}").status_code == 404  # its record expired with INSIGHTS_RUN_EXPIRES
    assert strict.celery.send_task("maintenance.expire_runs").get(timeout=20) >= 1
    assert not strict.services.redis.exists(meta)  # and beat's expire_runs dropped the Celery result


def test_a_run_started_while_auth_was_off_is_not_readable_once_auth_is_on(
    client: FlaskClient, web: FlaskClient, store: TokenStore
) -> None:
    task = client.post("/run/query/djt_event_count").get_json()["task"]
    response = as_token(web, new_token(store, "query:*")).get(f"/result/{task}")
    assert response.status_code == 403
    assert "while authentication was off" in response.get_json()["error"]


@pytest.mark.slow
def test_half_sent_requests_do_not_stall_the_web_process(settings: Settings, tmp_path: Path) -> None:
    """The shipped web command (gthread): slow clients hold threads, not every worker."""
    served = dataclasses.replace(settings, web_port=free_port())
    command = process_commands(served)["web"]
    with open(tmp_path / "web.log", "ab") as log:
        web = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **served.to_env()}, stdout=log, stderr=log)
    url = f"http://{served.web_host}:{served.web_port}/event_properties"
    slow: list[socket.socket] = []
    try:
        wait_for(lambda: _answers(url, timeout=2), timeout=30, what="gunicorn to serve")
        for _ in range(4):  # more half-sent requests than the web command has worker processes
            connection = socket.create_connection((served.web_host, served.web_port))
            connection.sendall(b"POST /event HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            slow.append(connection)
        time.sleep(0.5)  # time for them to reach the web process
        assert _answers(url, timeout=60), "the web process stalled behind half-sent requests"
        # ... and it answered while they still waited for their bodies: not once a stalled worker
        # had been killed (gunicorn's 30 s worker timeout), which would have closed them.
        for connection in slow:
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):  # open, and nothing was answered on it
                connection.recv(1, socket.MSG_PEEK)
    finally:
        for connection in slow:
            connection.close()
        web.terminate()
        web.wait(timeout=30)


def _answers(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False
