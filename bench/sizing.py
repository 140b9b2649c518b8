"""Sizing figures: what the built-in analytics modules cost per event, per process.

``python -m bench.ingest --modules builtin [--quick] [--events N] [--sizing-rounds R] [--sizing-workers 2,1]``

Runs the throughput phase of ``bench.ingest`` (500-event POSTs from 4 client threads, until
every receipt's batches are done) on fresh deployments in alternating rounds:

- ``builtin``: the built-in modules of ``modules/`` as a default deployment loads them
  (activity, problems, video, eventlog, students, grades, datalayer; ``bench.modules``
  excluded), fed realistic Open edX events from ``tasks.synthetic`` (``simulate`` +
  ``to_openedx``, a new seed per run so MongoDB never sees an event twice);
- ``trivial``: ``bench.modules``' four trivial handlers and ``bench.load``'s events, as
  ``bench.ingest`` measures by default;

each with the Celery worker at ``--sizing-workers`` prefork processes (default 2; ``2,1``
adds one-process runs of ``builtin``), then plain Celery (``bench/baseline.py``) once on the
same events count. Per run it measures, from after the warm-up until the queues drained:

- CPU seconds per process (psutil, with children): web, batcher, worker, redis, mongo;
- Redis ``used_memory`` and ``MEMORY USAGE`` per key family (``bench/keyspace.py``) before and
  after: bytes retained per event at production retentions;
- MongoDB commands the deployment's processes issued, counted by a pymongo
  ``CommandListener`` that ``bench/hooks/sitecustomize.py`` installs in those processes only,
  per (process, database, collection, command): commands and their statements (a bulk write
  of 500 upserts is 1 command, 500 statements); and documents per collection before and after.

It prints the medians over the rounds per configuration, CPU ms per 1,000 events per
process and what follows from them (events/s one worker core or one batcher sustains).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bson
import psutil
import pymongo
import redis

from bench import baseline, deploy, keyspace
from bench.load import make_bodies, make_events, post_all, wait_done
from tasks.pipeline.batch_store import BatchStore
from tasks.storage.keys import Keys
from tasks.synthetic import Config, simulate, to_openedx

HOOKS = Path(__file__).resolve().parent / "hooks"
PROCESSES = ("web", "batcher", "worker", "redis", "mongo")
WRITE_COMMANDS = ("insert", "update", "delete", "findAndModify")
KOMBU_PRIORITIES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's Redis queue keys per priority
Mode = Literal["builtin", "trivial"]
MB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the sizing mode (``--modules`` turns it on)."""
    parser.add_argument(
        "--modules", choices=("builtin", "trivial"),
        help="sizing figures instead of the figures above: CPU per 1,000 events per process, Redis memory and "
        "MongoDB writes per event with the built-in modules on realistic events (builtin: and the trivial handlers "
        "and plain Celery for comparison), or with the trivial handlers only (trivial)",
    )  # fmt: skip
    parser.add_argument("--sizing-rounds", type=int, help="rounds of --modules (default 3, quick 2)")
    parser.add_argument(
        "--sizing-workers", default="2",
        help="Celery prefork processes of --modules runs, comma-separated (default 2; '2,1' adds builtin with 1)",
    )  # fmt: skip


# Events -------------------------------------------------------------------------------------
def realistic_events(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """``count`` Open edX tracking-log events of simulated learners (two courses, a week at a time)."""
    made = 0
    for round_ in itertools.count():
        # About 68 events per learner and course in a week: 200 learners give ~27k events per week.
        for activity in simulate(Config(courses=2, students=200, days=7, seed=seed * 1000 + round_)):
            yield to_openedx(activity)
            made += 1
            if made >= count:
                return


def bodies(mode: Mode, count: int, seed: int, per_request: int = 500) -> tuple[list[bytes], float]:
    """Pre-serialized ``per_request``-event JSON arrays of ``count`` events, and bytes per event."""
    if mode == "trivial":
        made = make_bodies(count, per_request, uuid.uuid4().hex[:12])
    else:
        events = list(realistic_events(count, seed))
        made = [
            json.dumps(events[i : i + per_request], separators=(",", ":")).encode()
            for i in range(0, len(events), per_request)
        ]
    return made, sum(len(b) for b in made) / max(1, count)


# What the deployment did ----------------------------------------------------------------------
def roles(dep: deploy.Deployment, servers: deploy.Servers) -> dict[int, str]:
    """Every process id of the deployment (children included) by role: web, batcher, worker."""
    answer: dict[int, str] = {}
    for name, pid in dep.pids().items():
        role = "worker" if name.startswith("worker") else "batcher" if name.startswith("batcher") else name
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                answer[process.pid] = role
        except psutil.NoSuchProcess:
            pass
    return answer


def cpu(dep: deploy.Deployment, servers: deploy.Servers) -> dict[str, float]:
    """CPU seconds so far per role (web, batcher, worker: every process of it), Redis, nx-27017, this process."""
    answer = dict.fromkeys(PROCESSES, 0.0)
    for name, pid in dep.pids().items():
        role = "worker" if name.startswith("worker") else "batcher" if name.startswith("batcher") else name
        answer[role] += deploy.cpu_seconds(pid)
    answer["redis"] = deploy.cpu_seconds(servers.redis.pid or 0)
    answer["mongo"] = deploy.cpu_seconds(servers.mongo.pid or 0)
    own = psutil.Process().cpu_times()
    answer["bench"] = own.user + own.system
    return answer


def mongo_counts(directory: Path, by_pid: dict[int, str]) -> dict[tuple[str, str, str, str], list[int]]:
    """The hook's counts so far, per (role, database, collection, command): [commands, statements]."""
    answer: dict[tuple[str, str, str, str], list[int]] = {}
    for path in directory.glob("*.json"):
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        role = by_pid.get(int(path.stem), "gone")  # a process that exited (e.g. a recycled prefork child)
        for key, (commands, statements) in counts.items():
            database, collection, command = key.split("\t")
            entry = answer.setdefault((role, database, collection, command), [0, 0])
            entry[0] += commands
            entry[1] += statements
    return answer


def documents(client: pymongo.MongoClient[dict[str, Any]], prefix: str) -> dict[tuple[str, str], int]:
    """Documents per (database, collection) of every database of ours (``prefix``)."""
    answer = {}
    for database in client.list_database_names():
        if database.startswith(prefix):
            for collection in client[database].list_collection_names():
                answer[(database, collection)] = client[database][collection].estimated_document_count()
    return answer


def bson_sizes(
    client: pymongo.MongoClient[dict[str, Any]], prefix: str, sample: int = 200
) -> dict[tuple[str, str], float]:
    """Mean BSON bytes of a document per (database, collection) of ours, over its first ``sample`` documents.

    Engine-independent: what a document is before MongoDB's storage engine compresses it, without indexes.
    """
    answer = {}
    for database in client.list_database_names():
        if database.startswith(prefix):
            for collection in client[database].list_collection_names():
                sizes = [len(bson.encode(d)) for d in client[database][collection].find().limit(sample)]
                if sizes:
                    answer[(database, collection)] = sum(sizes) / len(sizes)
    return answer


def queued(client: redis.Redis, dep: deploy.Deployment) -> int:
    """Entries still waiting: intake stream, Celery queues, messages workers hold (kombu's ``unacked``)."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(Keys(dep.settings.redis_prefix).intake_stream)
    for queue in dep.settings.queues.all():
        for suffix in KOMBU_PRIORITIES:
            pipe.llen(queue + suffix)
    pipe.hlen("unacked")
    return sum(int(n) for n in pipe.execute())


def drain(client: redis.Redis, dep: deploy.Deployment, timeout: float = 60.0) -> bool:
    """Wait until nothing waits (see ``queued``), then a moment more for the hook's counts to be written."""
    deadline = time.monotonic() + timeout
    while queued(client, dep) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    return not queued(client, dep)


@dataclass
class Snapshot:
    """Everything measured at one moment."""

    cpu: dict[str, float]
    used_memory: int
    families: dict[str, keyspace.Family]
    mongo: dict[tuple[str, str, str, str], list[int]]
    documents: dict[tuple[str, str], int]
    at: float = field(default_factory=time.time)


@dataclass
class Run:
    """One throughput run of one configuration: the snapshots around it and its events."""

    mode: Mode
    workers: int
    events: int
    done: int
    seconds: float  # first POST to the latest batch finished
    event_bytes: float
    before: Snapshot
    after: Snapshot
    idle_cpu: dict[str, float]  # CPU seconds per second with no load, per process
    drained: bool
    bson: dict[tuple[str, str], float] = field(default_factory=dict)  # mean BSON bytes per document

    @property
    def rate(self) -> float:
        """Handled events per second."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def cpu_ms(self, name: str) -> float:
        """CPU ms per 1,000 handled events of one process (role)."""
        return (self.after.cpu.get(name, 0.0) - self.before.cpu.get(name, 0.0)) / max(1, self.done) * 1e6

    def redis_bytes(self) -> float:
        """Redis ``used_memory`` retained per handled event."""
        return (self.after.used_memory - self.before.used_memory) / max(1, self.done)

    def families(self) -> dict[str, keyspace.Family]:
        """Keys and bytes per key family the run left in Redis."""
        return keyspace.growth(self.before.families, self.after.families)

    def mongo(self) -> dict[tuple[str, str, str, str], list[int]]:
        """MongoDB commands and statements issued during the run, per (role, database, collection, command)."""
        answer = {}
        for key, (commands, statements) in self.after.mongo.items():
            old = self.before.mongo.get(key, [0, 0])
            if commands - old[0]:
                answer[key] = [commands - old[0], statements - old[1]]
        return answer

    def writes(self) -> tuple[int, int]:
        """Write commands and write statements issued during the run."""
        rows = [v for k, v in self.mongo().items() if k[3] in WRITE_COMMANDS]
        return sum(v[0] for v in rows), sum(v[1] for v in rows)

    def new_documents(self) -> dict[tuple[str, str], int]:
        """Documents per (database, collection) the run added."""
        names = set(self.before.documents) | set(self.after.documents)
        grown = {n: self.after.documents.get(n, 0) - self.before.documents.get(n, 0) for n in names}
        return {n: d for n, d in sorted(grown.items()) if d}

    def stored_bytes(self) -> float:
        """BSON bytes of the documents the run added, per handled event (documents x mean size)."""
        return sum(n * self.bson.get(k, 0.0) for k, n in self.new_documents().items()) / max(1, self.done)


def snapshot(
    dep: deploy.Deployment,
    servers: deploy.Servers,
    client: redis.Redis,
    mongo: pymongo.MongoClient[dict[str, Any]],
    counts: Path,
) -> Snapshot:
    """CPU first (the other measurements cost Redis and nx-27017 CPU), then Redis and MongoDB."""
    taken = cpu(dep, servers)
    used = int(client.info("memory")["used_memory"])
    families = keyspace.families(client, dep.settings.redis_prefix)
    return Snapshot(
        taken, used, families, mongo_counts(counts, roles(dep, servers)), documents(mongo, dep.settings.mongo_db_prefix)
    )


def run_once(
    servers: deploy.Servers, root: Path, mode: Mode, web: str, workers: int, events: int, clients: int, seed: int,
    **options: Any,
) -> Run:  # fmt: skip
    """One fresh deployment: warm up, measure idle CPU, snapshot, POST everything, drain, snapshot."""
    name = f"{mode}-c{workers}-{seed}"
    counts = root / f"mongo-counts-{name}"
    counts.mkdir(parents=True)
    env = {"PYTHONPATH": str(HOOKS), "BENCH_MONGO_COUNTS": str(counts)}
    dep = deploy.Deployment(
        servers, web, "prefork", root / name, modules=mode, worker_concurrency=workers, env=env, **options
    ).start()
    client = servers.client(0)
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(servers.mongo.url)
    try:
        payload, event_bytes = bodies(mode, events, seed)
        warm, _ = bodies(mode, 2000, seed + 500_000)
        store = BatchStore(client, 3600, Keys(dep.settings.redis_prefix))
        wait_done(store, [a.receipt for a in post_all(dep.base_url, warm, 2)], timeout=60.0)
        drain(client, dep)
        idle_start = cpu(dep, servers)
        time.sleep(2.0)
        idle_end = cpu(dep, servers)
        idle = {k: (idle_end[k] - idle_start[k]) / 2.0 for k in PROCESSES}
        before = snapshot(dep, servers, client, mongo, counts)
        accepted = post_all(dep.base_url, payload, clients)
        finished = wait_done(store, [a.receipt for a in accepted], timeout=max(120.0, events / 500))
        drained = drain(client, dep)
        after = snapshot(dep, servers, client, mongo, counts)
        sizes = bson_sizes(mongo, dep.settings.mongo_db_prefix)
    finally:
        mongo.close()
        dep.stop()
    first = min(a.sent for a in accepted)
    done = sum(a.events for a in accepted if a.receipt in finished)
    end = max(finished.values(), default=time.time())
    return Run(mode, workers, events, done, end - first, event_bytes, before, after, idle, drained, sizes)


# Reporting ----------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    """The median (NaN of nothing)."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(runs: dict[str, list[Run]], base: dict[str, Any] | None) -> None:
    """Print the sizing tables: medians per configuration over its rounds."""
    names = list(runs)
    width = 16

    def line(label: str, values: list[str]) -> None:
        print(f"  {label:<44}" + "".join(f"{v:>{width}}" for v in values))

    def med(name: str, figure: Any) -> float:
        return median([figure(r) for r in runs[name]])

    print()
    rounds = ", ".join(f"{n} x{len(runs[n])}" for n in names)
    print(f"sizing figures (median of rounds: {rounds}; CPU from after the warm-up until the queues drained):")
    line("configuration", names)
    line("events per run", [f"{runs[n][0].events:,}" for n in names])
    line("event size (bytes of JSON)", [f"{runs[n][0].event_bytes:,.0f}" for n in names])
    line("throughput (events/s)", [f"{med(n, lambda r: r.rate):,.0f}" for n in names])
    line("  rounds", ["/".join(f"{r.rate / 1000:.1f}k" for r in runs[n]) for n in names])
    if base:
        line("  ratio to plain Celery", [f"{med(n, lambda r: r.rate) / base['events_per_s']:.2f}x" for n in names])
    print("  CPU ms per 1,000 events:")
    for process in (*PROCESSES, "bench"):
        label = "bench (load generator)" if process == "bench" else process
        line(f"    {label}", [f"{med(n, lambda r, p=process: r.cpu_ms(p)):.1f}" for n in names])
    line("    total (web..mongo)", [f"{med(n, lambda r: sum(r.cpu_ms(p) for p in PROCESSES)):.1f}" for n in names])
    print("  derived:")
    line("    events/s per worker core (1e6 / worker ms)", [f"{med(n, lambda r: 1e6 / r.cpu_ms('worker')):,.0f}"
                                                           for n in names])  # fmt: skip
    line("    events/s one batcher sustains (its CPU)", [f"{med(n, lambda r: 1e6 / r.cpu_ms('batcher')):,.0f}"
                                                         for n in names])  # fmt: skip
    line("    events/s per core, whole deployment", [
        f"{med(n, lambda r: 1e6 / sum(r.cpu_ms(p) for p in PROCESSES)):,.0f}" for n in names
    ])  # fmt: skip
    line("    Redis used_memory retained, bytes/event", [f"{med(n, lambda r: r.redis_bytes()):,.0f}" for n in names])
    line("    Redis keys (MEMORY USAGE), bytes/event", [
        f"{med(n, lambda r: sum(f.bytes for f in r.families().values()) / max(1, r.done)):,.0f}" for n in names
    ])  # fmt: skip
    line("    MongoDB write commands per 1,000 events", [f"{med(n, lambda r: r.writes()[0] / r.done * 1000):.1f}"
                                                          for n in names])  # fmt: skip
    line("    MongoDB write statements per event", [f"{med(n, lambda r: r.writes()[1] / r.done):.2f}" for n in names])
    line("    MongoDB documents added per event", [
        f"{med(n, lambda r: sum(r.new_documents().values()) / r.done):.2f}" for n in names
    ])  # fmt: skip
    line("    MongoDB BSON bytes stored per event", [f"{med(n, lambda r: r.stored_bytes()):,.0f}" for n in names])
    line("  idle CPU ms per second (no load)", [])
    for process in PROCESSES:
        line(f"    {process}", [f"{med(n, lambda r, p=process: r.idle_cpu[p] * 1000):.1f}" for n in names])
    line("  all drained after every run", [str(all(r.drained for r in runs[n])) for n in names])
    if base:
        print(f"  plain Celery (bench/baseline.py, same pool, 4 trivial tasks per 100 events): "
              f"{base['events_per_s']:,.0f} events/s; CPU ms per 1,000 events: "
              + ", ".join(f"{k} {v / max(1, base['events']) * 1e6:.1f}" for k, v in base["cpu"].items()))  # fmt: skip
    for name in names:
        last = runs[name][-1]
        print()
        print(f"{name}, last round ({last.done:,} events): Redis retained per key family")
        grown = last.families()
        for family, f in grown.items():
            if f.keys or f.bytes:
                per_event = f.bytes / last.done
                print(f"    {family:<16} {f.keys:+9,d} keys {f.bytes / MB:+8.2f} MB {per_event:8.1f} bytes/event")
        print("  MongoDB commands (hook) per 1,000 events: role database.collection command: commands, statements")
        for (role, database, collection, command), (commands, statements) in sorted(last.mongo().items()):
            print(f"    {role:<8} {database}.{collection} {command}: {commands / last.done * 1000:.2f}, "
                  f"{statements / last.done * 1000:.1f}")  # fmt: skip
        print("  documents added per 1,000 events (mean BSON bytes): " + ", ".join(
            f"{d}.{c} {n / last.done * 1000:.1f} ({last.bson.get((d, c), 0):,.0f} B)"
            for (d, c), n in last.new_documents().items()
        ))  # fmt: skip


def main(servers: deploy.Servers, root: Path, args: argparse.Namespace, web: str, **options: Any) -> int:
    """The sizing mode: rounds of every configuration on fresh deployments, then plain Celery."""
    rounds = args.sizing_rounds or (2 if args.quick else 3)
    workers = [int(w) for w in args.sizing_workers.split(",") if w.strip()]
    configs: list[tuple[Mode, int]] = [("builtin", workers[0])]
    if args.modules == "builtin":
        configs.append(("trivial", workers[0]))
        configs += [("builtin", w) for w in workers[1:]]
    else:
        configs = [("trivial", w) for w in workers]
    runs: dict[str, list[Run]] = {f"{mode} c{w}": [] for mode, w in configs}
    print(f"sizing: web gunicorn -w 2 {web}, worker prefork, {rounds} rounds of {args.events:,} events: "
          + ", ".join(runs), flush=True)  # fmt: skip
    seeds = itertools.count(1)
    for number in range(rounds):
        for mode, w in configs if number % 2 == 0 else configs[::-1]:
            run = run_once(servers, root, mode, web, w, args.events, args.clients, next(seeds), **options)
            runs[f"{mode} c{w}"].append(run)
            print(f"  round {number + 1} {mode} c{w}: {run.rate:>7,.0f} events/s, {run.done:,}/{run.events:,} done, "
                  f"worker {run.cpu_ms('worker'):.0f} ms/1k, drained {run.drained}", flush=True)  # fmt: skip
    print(f"baseline: {args.baseline_events:,} events as chords of 100 ...", flush=True)
    events = list(make_events(args.baseline_events, uuid.uuid4().hex[:12]))
    redis_before = deploy.cpu_seconds(servers.redis.pid or 0)
    base = baseline.run(servers, [events[i : i + 100] for i in range(0, len(events), 100)], "prefork", root)
    base["cpu"]["redis"] = deploy.cpu_seconds(servers.redis.pid or 0) - redis_before  # includes worker start-up
    report(runs, base)
    return 0
