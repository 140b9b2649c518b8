"""The demo command: a generated week of a course through the real pipeline, every view rendering."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from config.settings import ROOT
from tasks.ops.embedded import free_port
from tests.conftest import wait_for

pytestmark = pytest.mark.slow  # a whole deployment, a generated week of a course through it


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers.get_content_type(), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read().decode(errors="replace")


def demo_values(summary: dict[str, Any]) -> dict[str, str]:
    """A value for every parameter a view of the shipped modules takes."""
    return {
        "course": summary["course"],
        "user": summary["students"][0],
        "who": "demo",
        "values": "1, 2, 2, 3",
        "title": "Demo",
    }


def test_the_demo_loads_a_week_and_every_view_renders(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BROKER_URL", "MONGO_URL")}
    env.update(INSIGHTS_DATA_DIR=str(tmp_path), INSIGHTS_PORT=str(port))
    log = (tmp_path / "demo.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tasks", "run", "--demo"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    summary_path = tmp_path / "demo" / "summary.json"
    try:
        wait_for(
            lambda: summary_path.exists() or process.poll() is not None, timeout=240, what="the demo data to be handled"
        )
        assert process.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        summary = json.loads(summary_path.read_text())
        assert summary["events"] > 1000 and summary["dashboard"].startswith(f"{base}/?")
        values = demo_values(summary)
        views = [e for e in json.loads(get(f"{base}/schema")[2]) if e["class"] == "view"]
        assert len(views) >= 6  # the shipped modules' (the test module is not loaded)
        plots = 0
        for view in views:
            args = {name: values[name] for name in view["parameters"] if name in values}
            missing = [name for name in view["required"] if name not in args]
            assert not missing, f"the demo has no value for {view['name']}'s {missing}"
            status, kind, body = get(f"{base}/view/{view['name']}?{urllib.parse.urlencode(args)}")
            assert status == 200 and kind == "text/html" and body.strip(), (view["name"], status, body[:300])
            for src in re.findall(r'<img src="([^"]+)"', body):
                plots += 1
                assert get(f"{base}{src}")[1] == "image/png", src
        assert plots >= 5  # activity, video, problems and grades (plot_grades, histogram)
        status, _, page = get(summary["dashboard"])
        assert status == 200 and 'data-autorun="true"' in page
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, (tmp_path / "demo.log").read_text()[-3000:]
