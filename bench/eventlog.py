"""Event-log benchmark: the batcher's CPU per 1,000 events with each event-log backend.

``python -m bench.eventlog [--events N] [--rounds R]``

Starts its own Redis and nx-27017 (as ``bench.ingest`` does) and, in this process, a batcher
(``tasks.pipeline.batcher.Batcher``, the four trivial handlers of ``bench.modules``) on an intake
stream filled beforehand with ``N`` events in 500-event entries; it times the batcher draining
them (dispatching to Redis; no web, no worker), with ``INSIGHTS_EVENT_LOG=local`` and ``=mongo``
in alternating rounds. Without the web and workers competing for the machine's cores the figures
vary far less than those of ``bench.ingest --compare-logs``, so the log's own cost shows.

Per round and backend: CPU ms per 1,000 events of the batcher's main thread, of its other threads
(the event-log writer; pymongo's monitors), of nx-27017, and the wall time; then the medians
and the differences mongo - local.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import deploy
from bench.load import make_events
from config.settings import Settings
from tasks.app import create_insights
from tasks.pipeline.batcher import Batcher
from tasks.storage.mongo import event_log_database

BACKENDS = ("local", "mongo")
PER_ENTRY = 500


@dataclass
class Drain:
    """CPU milliseconds per 1,000 events of one drain."""

    main: float
    others: float
    mongo: float
    wall: float

    @property
    def batcher(self) -> float:
        """The whole batcher process: main thread and the others."""
        return self.main + self.others


def process_cpu() -> float:
    """CPU seconds of this process so far (every thread)."""
    times = os.times()
    return times.user + times.system


def drain(servers: deploy.Servers, root: Path, backend: str, events: int, entries: list[str]) -> Drain:
    """Fill the intake with ``entries`` and time a fresh batcher with ``backend`` draining them."""
    settings = Settings(
        redis_url=servers.url(0),
        mongo_url=servers.mongo.url,
        data_dir=root / "data",
        fs_root=root / "data" / "files",
        module_packages=("modules", "bench.modules"),
        exclude_modules=deploy.BUILTIN_MODULES,
        event_log=backend,  # type: ignore[arg-type]
    )
    servers.client(0).flushdb()
    app = create_insights(settings)
    app.services.mongo.drop_database(event_log_database(settings.mongo_db_prefix))
    batcher = Batcher(app, consumer="bench")
    batcher.ensure_group()
    for body in entries[:2]:  # warm up: connections, indexes, first-use costs
        app.intake.submit_json(body, PER_ENTRY, sender="bench")
    while app.intake.backlog() or batcher.pending:
        batcher.step(max_block=0.05)
    for body in entries:
        app.intake.submit_json(body, PER_ENTRY, sender="bench")
    mongo = psutil.Process(servers.mongo.pid or 0)
    mongo_before, thread_before, process_before = sum(mongo.cpu_times()[:2]), time.thread_time(), process_cpu()
    start = time.perf_counter()
    while app.intake.backlog() or batcher.pending:
        batcher.step(max_block=0.05)
    batcher.log_writer.shutdown(wait=True)
    wall = time.perf_counter() - start
    main = time.thread_time() - thread_before
    others = process_cpu() - process_before - main
    mongo_cpu = sum(mongo.cpu_times()[:2]) - mongo_before
    batcher.close()
    scale = 1e6 / events
    return Drain(main * scale, others * scale, mongo_cpu * scale, wall * scale)


def main(argv: list[str] | None = None) -> int:
    """Alternate drains with each backend; print every round and the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.eventlog", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per drain (default 20k)")
    parser.add_argument("--rounds", type=int, default=4, help="drains per backend (default 4)")
    args = parser.parse_args(argv)
    events = list(make_events(args.events))
    entries = [json.dumps(events[i : i + PER_ENTRY], separators=(",", ":")) for i in range(0, len(events), PER_ENTRY)]
    count = PER_ENTRY * len(entries)
    root = Path(tempfile.mkdtemp(prefix="bench-eventlog-"))
    runs: dict[str, list[Drain]] = {backend: [] for backend in BACKENDS}
    print(f"{count:,} events per drain, {args.rounds} rounds; CPU ms per 1,000 events", flush=True)
    with deploy.Servers(root) as servers:
        for number in range(args.rounds):
            for backend in BACKENDS if number % 2 == 0 else BACKENDS[::-1]:
                result = drain(servers, root / f"{backend}-{number}", backend, count, entries)
                runs[backend].append(result)
                print(f"  round {number + 1} {backend:<5}  batcher {result.batcher:5.1f} (main {result.main:5.1f}, "
                      f"other threads {result.others:4.1f})  nx-27017 {result.mongo:4.1f}  "
                      f"wall {result.wall:5.1f} ms", flush=True)  # fmt: skip
    print("medians:")
    fields = ("batcher", "main", "others", "mongo", "wall")
    medians = {b: {f: statistics.median(getattr(r, f) for r in runs[b]) for f in fields} for b in BACKENDS}
    for backend in BACKENDS:
        print(f"  {backend:<6} " + "  ".join(f"{f} {medians[backend][f]:5.1f}" for f in fields))
    print("  mongo - local " + "  ".join(f"{f} {medians['mongo'][f] - medians['local'][f]:+5.1f}" for f in fields))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
