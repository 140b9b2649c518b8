"""The one-command start: embedded servers, web, worker and beat, and a clean stop."""

from __future__ import annotations

import dataclasses
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

from config.processes import Commands
from config.settings import ROOT, Settings
from tasks.ops.cli import process_commands
from tasks.ops.embedded import free_port
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
        [sys.executable, "-m", "tasks", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
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


def test_run_starts_web_batcher_workers_and_beat_from_the_settings() -> None:
    settings = Settings(web_host="0.0.0.0", web_port=9000, web_threads=3, shards=2)
    commands = process_commands(settings, Commands(python="/py"))

    assert commands == {
        "web": ["/py", "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "3", "-b", "0.0.0.0:9000",
                "web.wsgi:app"],
        "batcher": ["/py", "-m", "tasks", "batcher"],
        "worker": ["/py", "-m", "celery", "-A", "tasks.worker", "worker", "-Q", "views,queries,events,reports,batch",
                   "-c", "2", "-l", "INFO", "-n", "main@%h"],
        "shards": ["/py", "-m", "celery", "-A", "tasks.worker", "worker", "-Q",
                   "events.user.0,events.user.1,events.resource.0,events.resource.1", "-P", "solo", "-l", "INFO",
                   "-n", "shards@%h", "--prefetch-multiplier", "1"],
        "beat": ["/py", "-m", "celery", "-A", "tasks.worker", "beat", "-l", "INFO"],
    }  # fmt: skip


@pytest.mark.slow  # command-line processes
def test_run_stopped_by_a_start_up_error_says_it_last(settings: Settings, tmp_path: Path) -> None:
    """A module package with a duplicate name: every child fails at start; run's last line is the error and its fix."""
    package = f"dupes_{os.getpid()}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    for module in ("first", "second"):
        (tmp_path / package / f"{module}.py").write_text(
            "from tasks import query\n\n\n@query()\ndef twice_named():\n    return 1\n"
        )
    deployment = dataclasses.replace(settings, module_packages=(package,), data_dir=tmp_path, web_port=free_port())
    env = {**os.environ, **deployment.to_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "tasks", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("insights: query 'twice_named': the name 'twice_named' is defined twice"), last
    assert "rename one, or mark the generic one with fallback=True" in last
