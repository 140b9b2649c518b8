"""The demo: a generated week of a course, sent through the real pipeline of a running server."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.sender import send_events
from tasks.synthetic import Config, generate_files

log = logging.getLogger(__name__)

CHUNK = 500
WAIT = 300.0


def load_demo(base_url: str, folder: Path, config: Config | None = None) -> dict[str, Any]:
    """Generate a week of LMS activity, POST it to ``base_url`` and wait until it is handled.

    Returns (and writes to ``folder/summary.json``) the course, students, videos and
    problems of the demo and the dashboard URL showing them.
    """
    config = config or Config(courses=1, students=40, days=7, seed=2026)
    _wait_until_serving(base_url)
    paths = generate_files(config, folder, formats=("openedx",))
    events = [json.loads(line) for path in paths for line in _lines(path)]
    receipts = [
        send_events(f"{base_url}/event", events[start : start + CHUNK])["receipt"]
        for start in range(0, len(events), CHUNK)
    ]
    for receipt in receipts:
        _wait_handled(base_url, receipt)
    summary = _summary(events, base_url)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    log.warning("demo: %d events handled; open %s", len(events), summary["dashboard"])
    return summary


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        yield from (line for line in f if line.strip())


def _summary(events: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
    course = next(e["context"]["course_id"] for e in events if e.get("context", {}).get("course_id"))
    students = sorted({e["username"] for e in events if e.get("username")})
    query = urllib.parse.urlencode({"course": course, "user": students[0], "autorun": "1"})
    return {
        "events": len(events),
        "course": course,
        "students": students,
        "dashboard": f"{base_url}/?{query}",
    }


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def _wait_until_serving(base_url: str) -> None:
    deadline = time.monotonic() + WAIT
    while _get(f"{base_url}/health")[0] != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url} did not become healthy within {WAIT:g} s")
        time.sleep(0.5)


def _wait_handled(base_url: str, receipt: str) -> None:
    deadline = time.monotonic() + WAIT
    while (_get(f"{base_url}/receipt/{receipt}")[1] or {}).get("state") != "done":
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo's events (receipt {receipt}) were not handled within {WAIT:g} s")
        time.sleep(0.2)
