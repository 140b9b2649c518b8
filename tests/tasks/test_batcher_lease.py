"""One active batcher cluster-wide (tasks/pipeline/batcher.py): the others stand by on its lease."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.ops.embedded import EmbeddedRedis
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


def dispatched_events(app: Insights) -> int:
    """How many events the batches dispatched so far hold (no worker handles this deployment's batches)."""
    batches = app.services.redis.zrange(app.keys.pending_batches, 0, -1)
    return sum(len(app.store.events(text(batch))) for batch in batches)


def test_taking_the_lease_over_dispatches_the_entries_of_the_last_holder_once(unattended: Insights) -> None:
    app = unattended
    size = app.settings.batch_size
    app.intake.join("dead")
    receipt = app.intake.submit([{"username": "ada", "n": n} for n in range(size + 5)])  # spread over two rounds
    assert [entry_id for entry_id, _ in app.intake.read("dead", block=0.1)] == [receipt]  # read, never acknowledged
    batcher = Batcher(app, consumer="heir")
    try:
        assert batcher.active()  # takes the free lease and claims what "dead" left
        batcher.step(max_block=0.1)
        batcher.flush(whole=True)
        assert app.intake.backlog() == 0
        assert dispatched_events(app) == size + 5  # each event once, not once per copy of the entry
        assert app.store.receipt(receipt)["duplicates"] == 0
    finally:
        batcher.lease.release()
        batcher.close()


def test_a_batcher_whose_redis_is_gone_when_it_stops_still_closes_its_event_log(
    settings: Settings, tmp_path: Path
) -> None:
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        own = dataclasses.replace(settings, redis_url=server.url, data_dir=tmp_path / "data")
        app = create_insights(own)
        try:
            batcher, stop, thread = started(app, "orphan")
            wait_for(lambda: batcher.renewed is not None, what="the batcher to become active")
            server.stop()  # Redis gone: the lease cannot be checked on the way out
            stop.set()
            thread.join(timeout=60)
            assert not thread.is_alive()
            with pytest.raises(RuntimeError):  # the event-log writer was shut down: close() ran
                batcher.log_writer.submit(time.time)
        finally:
            app.services.close()
