"""One active batcher cluster-wide (tasks/pipeline/batcher.py): the others stand by on its lease."""

from __future__ import annotations

import threading
import time

from tasks.app import Insights
from tasks.pipeline.batcher import Batcher
from tasks.pipeline.stream import GROUP
from tasks.storage.replies import text
from tests.conftest import wait_for


def started(app: Insights, name: str) -> tuple[Batcher, threading.Event, threading.Thread]:
    """A batcher running in a thread, with the event that stops it."""
    batcher, stop = Batcher(app, consumer=name), threading.Event()
    thread = threading.Thread(target=batcher.run, args=(stop,), daemon=True)
    thread.start()
    return batcher, stop, thread


def readers(app: Insights) -> set[str]:
    """The batchers that ever read the intake stream (members of its consumer group)."""
    return {text(c["name"]) for c in app.services.redis.xinfo_consumers(app.intake.stream, GROUP)}


def test_of_two_batchers_one_reads_the_intake_and_the_standby_takes_over_when_it_stops(unattended: Insights) -> None:
    app = unattended
    first, stop_first, first_thread = started(app, "first")
    wait_for(lambda: first.renewed is not None, what="the first batcher to become active")
    second, stop_second, second_thread = started(app, "second")
    try:
        for n in range(5):
            app.intake.submit([{"username": "ada", "n": n}])
        wait_for(lambda: app.intake.backlog() == 0, what="the active batcher to dispatch every entry")
        assert readers(app) == {"first"} and second.renewed is None

        stop_first.set()
        first_thread.join(timeout=30)
        stopped = time.monotonic()
        app.intake.submit([{"username": "ada", "n": 5}])
        wait_for(lambda: app.intake.backlog() == 0, what="the standby to take over and dispatch")
        print(f"\nbatcher takeover after a clean stop: {time.monotonic() - stopped:.2f} s")
        assert readers(app) == {"first", "second"} and second.renewed is not None
    finally:
        stop_first.set()
        stop_second.set()
        first_thread.join(timeout=30)
        second_thread.join(timeout=30)
