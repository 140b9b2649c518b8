"""The one-command start: embedded servers, web, worker and beat, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from config.settings import ROOT
from tasks.embedded import free_port
from tests.conftest import wait_for

pytestmark = pytest.mark.slow  # a whole deployment: embedded servers, gunicorn, workers, beat


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def test_run_starts_everything_with_embedded_servers_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL", "MONGO_URL")}
    env.update(INSIGHTS_DATA_DIR=str(tmp_path), INSIGHTS_PORT=str(port))
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        schema = wait_for(lambda: http("GET", f"{base}/schema")[1], timeout=60, what="the web app to serve /schema")
        names = {entry["name"] for entry in schema}
        assert {"recent_events", "activity_plot"} <= names and "djt_event_count" not in names  # testmodule is opt-in
        status, accepted = http("POST", f"{base}/event", json.dumps({"user": "someone"}).encode())
        assert status == 202 and accepted["accepted"] == 1
        recent = f"{base}/query/recent_events?limit=5"
        wait_for(lambda: http("GET", recent)[1] == [{"user": "someone"}], timeout=60, what="the event in the event log")
        children = psutil.Process(process.pid).children(recursive=True)
        commands = " ".join(" ".join(child.cmdline()) for child in children)
        for expected in ("redis-server", "nx_27017", "gunicorn", "batcher", "main@", "shards@", "beat"):
            assert expected in commands
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert "Couldn't ack" not in (tmp_path / "run.log").read_text()
