"""Flower out of the box: it switches task events on in our workers and shows tasks by name."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from config.settings import ROOT, Settings
from tasks.app import Insights
from tasks.ops.embedded import free_port
from tests.conftest import COMMANDS, Pipeline, stop_process, wait_for

pytestmark = pytest.mark.slow  # a Flower process


def fetch(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_flower_shows_our_tasks_by_name_and_our_queues(
    insights: Insights, worker: Pipeline, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, **settings.to_env(), "FLOWER_UNAUTHENTICATED_API": "1"}
    command = COMMANDS.flower(port, address="127.0.0.1")
    with open(tmp_path / "flower.log", "wb") as log:
        flower = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: fetch(f"{base}/api/workers?refresh=1"), timeout=60, what="Flower to see the workers")

        def seen() -> Any:
            result = insights.celery.tasks["query.djt_fake_user_count"].apply_async()
            result.get(timeout=20)
            result.forget()
            tasks = fetch(f"{base}/api/tasks?limit=200") or {}
            named = [t for t in tasks.values() if t.get("name") == "query.djt_fake_user_count"]
            return [t for t in named if t.get("state") == "SUCCESS"]  # Flower may not have the last event yet

        wait_for(seen, timeout=60, what="Flower to show a finished task by its name")
        queues = fetch(f"{base}/api/queues/length") or {}
        names = {q["name"] for q in queues.get("active_queues", [])}
        assert {"views", "queries", "events"} <= names
    finally:
        stop_process(flower)
