"""Baseline: plain Celery, one chord of four trivial tasks per 100-event batch.

The Celery app reads its Redis URL from ``BENCH_BASELINE_REDIS`` (a database of the
benchmark's own Redis); run a worker with
``celery -A bench.baseline worker -Q bench-baseline``. Settings mirror what matters in
ours: JSON, Redis broker and result backend, late acknowledgement.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from pathlib import Path

from celery import Celery, chord

from bench import deploy

QUEUE = "bench-baseline"
COUNTER = "bench:baseline:done"

app = Celery("baseline", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("BENCH_BASELINE_REDIS", "redis://127.0.0.1:1/1"),
    result_backend=os.environ.get("BENCH_BASELINE_REDIS", "redis://127.0.0.1:1/1"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    result_expires=24 * 3600,
    broker_transport_options={"visibility_timeout": 3600},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def _touch(events: list[dict]) -> int:
    for e in events:
        e["n"]
    return len(events)


@app.task(name="baseline.touch_a")
def touch_a(events: list[dict]) -> int:
    """Read one field of every event."""
    return _touch(events)


@app.task(name="baseline.touch_b")
def touch_b(events: list[dict]) -> int:
    """Read one field of every event."""
    return _touch(events)


@app.task(name="baseline.touch_c")
def touch_c(events: list[dict]) -> int:
    """Read one field of every event."""
    return _touch(events)


@app.task(name="baseline.touch_d")
def touch_d(events: list[dict]) -> int:
    """Read one field of every event."""
    return _touch(events)


@app.task(name="baseline.done")
def done(counts: list[int]) -> None:
    """Chord body: count one finished batch."""
    client = app.backend.client  # the result backend's Redis client
    client.incr(COUNTER)


HANDLERS = (touch_a, touch_b, touch_c, touch_d)


def worker_commands(worker_mode: str) -> dict[str, list[str]]:
    """Command lines of the baseline worker(s), started like ours with the same pool."""
    commands = dataclasses.replace(deploy.COMMANDS, app="bench.baseline")
    if worker_mode == "prefork":
        return {"baseline-worker": commands.worker(QUEUE, concurrency=2, name="baseline-prefork@%h")}
    return {f"baseline-worker{i}": commands.worker(QUEUE, solo=True, name=f"baseline-solo{i}@%h") for i in range(2)}


def run(servers: deploy.Servers, events: list[list[dict]], worker_mode: str, logs: Path, db: int = 1) -> dict:
    """Send one chord per batch as fast as possible; wait for the counter. Returns the figures."""
    url = servers.url(db)
    client = servers.client(db)
    client.flushdb()
    app.conf.update(broker_url=url, result_backend=url)
    env = deploy.child_env({"BENCH_BASELINE_REDIS": url})
    processes = {
        name: deploy.start(args, env, logs / f"{name}.log") for name, args in worker_commands(worker_mode).items()
    }
    try:
        deploy.wait_until(lambda: deploy.ping_workers(url) >= len(processes), deploy.START_TIMEOUT,
                          "the baseline workers", list(processes.values()))  # fmt: skip
        cpu_before = {name: deploy.cpu_seconds(p.pid) for name, p in processes.items()}
        total = sum(len(batch) for batch in events)
        results = []  # kept until the end: freeing one unsubscribes from its result while we send
        start = time.time()
        for batch in events:
            results.append(chord([task.s(batch) for task in HANDLERS], done.s()).apply_async())
        sent = time.time()
        deadline = time.monotonic() + max(60.0, total / 500)
        while int(client.get(COUNTER) or 0) < len(events) and time.monotonic() < deadline:
            time.sleep(0.01)
        end = time.time()
        finished = int(client.get(COUNTER) or 0)
        cpu = {name: deploy.cpu_seconds(p.pid) - cpu_before[name] for name, p in processes.items()}
        results.clear()
        gc.collect()
        app.backend.result_consumer.stop()
    finally:
        for process in processes.values():
            deploy.stop(process)
    return {
        "events": total,
        "chords": len(events),
        "chords_done": finished,
        "send_seconds": sent - start,
        "seconds": end - start,
        "events_per_s": total * finished / len(events) / (end - start),
        "cpu": cpu,
    }
