"""Soak benchmark: steady load for minutes; memory and queue lengths sampled over time.

``python -m bench.soak [--minutes 3] [--rate 3000] [--quick] [--ttl S]``

Starts the deployment of ``bench.ingest`` (own Redis and nx-27017, ``gunicorn -w 2`` web,
batcher, Celery prefork ``-c 2`` worker, the four trivial ``bench.modules`` handlers), posts
100-event requests at a steady rate for N minutes, and every few seconds samples the RSS of
web, batcher, worker (each with its children) and Redis, Redis ``used_memory``, the intake
stream's length and the age of its oldest entry, the Celery queues (``LLEN`` of their keys on
the Redis broker, and kombu's ``unacked`` hash: tasks workers hold), and the events handled so
far (accepted requests whose receipts are done). Then it stops the load, waits for the queues
to drain, prints a summary and writes a plot to ``var/soak.png``.

Verdicts: **flat memory** — per process, the mean RSS of the last third of the load phase is
within 10 % or 20 MB of the first third's (the least-squares slope, MB/min, is printed too:
a slow leak can pass that rule in minutes and still matter in days); **bounded queues** — the
events accepted but not yet handled never exceeded ``--max-backlog`` seconds of load, the oldest
intake entry never waited longer, and everything drained after the load stopped; **bounded
subscriptions** — Redis pub/sub channels (``INFO stats``; a Redis result backend subscribes to
``celery-task-meta-<id>`` per task it might wait for) do not grow with the events.

Redis keeps dedupe records, batch records, receipts and task results for a day by default,
so its dataset grows with every event by design: it is reported but left out of the
flat-memory verdict, unless ``--ttl`` shortens those retentions so that Redis reaches a steady
state during the soak. **Retained bytes per handled event** are measured twice, after the
warm-up and again once the queues drained (so nothing in flight is counted): Redis ``INFO
memory`` ``used_memory`` (all Redis keeps), and ``MEMORY USAGE`` of every key summed per key
family (``bench/keyspace.py``: which family holds what); each delta divided by the events
handled.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from bench import deploy, keyspace
from bench.load import Accepted, Poster, make_events, post_all, wait_done
from config.settings import ROOT
from tasks.pipeline.batch_store import DONE, BatchStore
from tasks.storage.keys import Keys

PROCESSES = ("web", "batcher", "worker", "redis")
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport: queue key of priority p is f"{queue}\x06\x16{p}"
KOMBU_PRIORITIES = (3, 6, 9)  # priority 0 (the default) is the queue's own key
UNACKED = "unacked"  # kombu's hash of messages delivered to workers and not yet acknowledged
FLAT_PERCENT = 10.0
FLAT_MB = 20.0
MB = 1024 * 1024


# Load -----------------------------------------------------------------------------------------
class Load(threading.Thread):
    """POSTs ``per_request`` events every ``per_request / rate`` seconds for ``seconds`` (monotonic schedule).

    Bodies are made on the fly (all events different, so dedupe never skips work); acceptances
    are queued in ``accepted`` for the sampler, failures counted.
    """

    def __init__(self, base_url: str, rate: float, seconds: float, per_request: int = 100, clients: int = 4) -> None:
        super().__init__(name="soak-load", daemon=True)
        self.poster = Poster(base_url)
        self.rate, self.seconds, self.per_request, self.clients = rate, seconds, per_request, clients
        self.accepted: deque[Accepted] = deque()
        self.sent_events = 0
        self.failed_requests = 0
        self.last_error = ""
        self.max_outstanding = 0
        self.stopping = threading.Event()
        self._outstanding = 0
        self._lock = threading.Lock()

    def bodies(self) -> Iterator[bytes]:
        """JSON arrays of ``per_request`` new events, forever."""
        nonce = uuid.uuid4().hex[:12]
        chunk = 0
        while True:
            events = list(make_events(self.per_request, f"{nonce}{chunk:08x}", seed=chunk))
            yield json.dumps(events, separators=(",", ":")).encode()
            chunk += 1

    def run(self) -> None:
        interval = self.per_request / self.rate
        requests = max(1, round(self.rate * self.seconds / self.per_request))
        with ThreadPoolExecutor(self.clients, thread_name_prefix="soak-post") as pool:
            start = time.monotonic()
            for k, body in zip(range(requests), self.bodies(), strict=False):
                delay = start + k * interval - time.monotonic()
                if delay > 0 and self.stopping.wait(delay):
                    break
                with self._lock:
                    self._outstanding += 1
                    self.max_outstanding = max(self.max_outstanding, self._outstanding)
                self.sent_events += self.per_request
                pool.submit(self.poster.post, body).add_done_callback(self._done)

    def _done(self, future: Future[Accepted]) -> None:
        with self._lock:
            self._outstanding -= 1
        error = future.exception()
        if error is None:
            self.accepted.append(future.result())
        else:
            self.failed_requests += 1
            self.last_error = f"{type(error).__name__}: {error}"


class Progress:
    """Events handled so far: accepted requests whose receipts are done (checked oldest first)."""

    def __init__(self, store: BatchStore, load: Load, max_checks: int = 5000) -> None:
        self.store, self.load, self.max_checks = store, load, max_checks
        self.pending: deque[Accepted] = deque()
        self.accepted_events = 0
        self.handled_events = 0
        self.failed_handlers = 0

    def update(self) -> None:
        """Take new acceptances from the load and count the receipts that are done now."""
        while self.load.accepted:
            accepted = self.load.accepted.popleft()
            self.pending.append(accepted)
            self.accepted_events += accepted.events
        still: deque[Accepted] = deque()
        for checked, accepted in enumerate(self.pending):
            state: dict[str, Any] = self.store.receipt(accepted.receipt) if checked < self.max_checks else {}
            if state.get("state") == DONE:
                self.handled_events += accepted.events
                self.failed_handlers += len(state.get("failed", []))
            else:
                still.append(accepted)
        self.pending = still

    @property
    def in_flight(self) -> int:
        """Events accepted and not yet handled."""
        return self.accepted_events - self.handled_events


# Sampling -------------------------------------------------------------------------------------
def rss_mb(pid: int | None) -> float:
    """Resident memory (MB) of a process and its live descendants."""
    if not pid:
        return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / MB


@dataclass
class Sample:
    """One row of the soak table."""

    t: float  # seconds since the load started
    phase: str  # "start", "load" or "drain"
    rss: dict[str, float]  # MB per process (with children)
    redis_used: float  # MB, Redis INFO used_memory
    channels: int  # Redis pub/sub channels somebody subscribes to (result backends wait on them)
    intake: int  # entries in the intake stream
    oldest: float  # seconds the oldest intake entry has waited (0 when empty)
    queues: dict[str, int]  # LLEN per Celery queue
    unacked: int  # messages delivered to workers, not yet acknowledged
    accepted: int  # events accepted so far (202)
    handled: int  # events whose receipts are done
    posted_rate: float = 0.0  # events/s accepted since the previous sample
    handled_rate: float = 0.0  # events/s handled since the previous sample

    @property
    def queued(self) -> int:
        """Tasks waiting in every Celery queue."""
        return sum(self.queues.values())

    @property
    def in_flight(self) -> int:
        """Events accepted, not yet handled."""
        return self.accepted - self.handled


@dataclass
class Sampler:
    """Takes samples of one deployment."""

    dep: deploy.Deployment
    servers: deploy.Servers
    progress: Progress
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.servers.client(0)

    def take(self, phase: str) -> Sample:
        """Sample everything now, and append it."""
        self.progress.update()
        client = self.client
        pids = self.dep.pids()
        rss = {
            "web": rss_mb(pids.get("web")),
            "batcher": rss_mb(pids.get("batcher")),
            "worker": sum(rss_mb(pid) for name, pid in pids.items() if name.startswith("worker")),
            "redis": rss_mb(self.servers.redis.pid),
        }
        queues = self.dep.settings.queues.all()
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            for priority in KOMBU_PRIORITIES:
                pipe.llen(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{priority}")
        pipe.hlen(UNACKED)
        stream = Keys(self.dep.settings.redis_prefix).intake_stream
        pipe.xlen(stream)
        pipe.xrange(stream, count=1)
        pipe.info("memory")
        pipe.info("stats")
        answers: list[Any] = pipe.execute()
        per_queue = 1 + len(KOMBU_PRIORITIES)
        lengths = {q: sum(answers[i * per_queue : (i + 1) * per_queue]) for i, q in enumerate(queues)}
        unacked, intake, oldest_entry, memory, stats = answers[len(queues) * per_queue :]
        oldest = 0.0
        if oldest_entry:
            millis = int(oldest_entry[0][0].decode().split("-")[0])
            oldest = max(0.0, time.time() - millis / 1000)
        sample = Sample(
            t=time.monotonic() - self.started,
            phase=phase,
            rss=rss,
            redis_used=memory["used_memory"] / MB,
            channels=int(stats.get("pubsub_channels", 0)),
            intake=int(intake),
            oldest=oldest,
            queues=lengths,
            unacked=int(unacked),
            accepted=self.progress.accepted_events,
            handled=self.progress.handled_events,
        )
        if self.samples:
            previous = self.samples[-1]
            elapsed = max(1e-9, sample.t - previous.t)
            sample.posted_rate = (sample.accepted - previous.accepted) / elapsed
            sample.handled_rate = (sample.handled - previous.handled) / elapsed
        self.samples.append(sample)
        return sample


HEADER = (
    f"{'t s':>6} {'phase':<6} {'posted/s':>8} {'handled/s':>9} {'in flight':>9} "
    + " ".join(f"{name + ' MB':>10}" for name in PROCESSES)
    + f" {'redis used':>10} {'subs':>6} {'intake':>6} {'oldest s':>8} {'queued':>6} {'unacked':>7}  queues"
)


def row(sample: Sample) -> str:
    """One printed table row."""
    queues = " ".join(f"{name}={n}" for name, n in sample.queues.items() if n) or "-"
    return (
        f"{sample.t:6.0f} {sample.phase:<6} {sample.posted_rate:8,.0f} {sample.handled_rate:9,.0f} "
        f"{sample.in_flight:9,d} "
        + " ".join(f"{sample.rss[name]:10.1f}" for name in PROCESSES)
        + f" {sample.redis_used:10.1f} {sample.channels:6d} {sample.intake:6d} {sample.oldest:8.2f} {sample.queued:6d} "
        f"{sample.unacked:7d}  {queues}"
    )


# Summary --------------------------------------------------------------------------------------
@dataclass
class Growth:
    """Memory of one process: mean of the first and the last third of the load phase."""

    name: str
    first: float
    last: float
    slope: float = 0.0  # MB per minute, least squares over the load samples

    @property
    def mb(self) -> float:
        """Growth in MB."""
        return self.last - self.first

    @property
    def percent(self) -> float:
        """Growth in percent of the first third."""
        return self.mb / self.first * 100 if self.first else 0.0

    @property
    def flat(self) -> bool:
        """Growth under 10 % or under 20 MB."""
        return self.percent < FLAT_PERCENT or self.mb < FLAT_MB


def growth(samples: list[Sample]) -> dict[str, Growth]:
    """Per process (and Redis used_memory): last-third mean vs first-third mean of the load samples."""
    load = [s for s in samples if s.phase == "load"]
    third = max(1, len(load) // 3)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    times = [s.t for s in load]
    answer = {}
    for name in PROCESSES:
        values = [s.rss[name] for s in load]
        answer[name] = Growth(name, mean(values[:third]), mean(values[-third:]), slope(times, values))
    used = [s.redis_used for s in load]
    answer["redis used"] = Growth("redis used", mean(used[:third]), mean(used[-third:]), slope(times, used))
    return answer


def slope(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per minute."""
    if len(times) < 2:
        return 0.0
    t0, v0 = sum(times) / len(times), sum(values) / len(values)
    spread = sum((t - t0) ** 2 for t in times)
    return 60 * sum((t - t0) * (v - v0) for t, v in zip(times, values, strict=True)) / spread if spread else 0.0


@dataclass
class Retained:
    """Redis after the warm-up and after draining: ``used_memory`` and the key families."""

    prefix: str
    used_before: int = 0  # bytes, INFO memory used_memory
    used_after: int = 0
    before: dict[str, keyspace.Family] = field(default_factory=dict)
    after: dict[str, keyspace.Family] = field(default_factory=dict)

    def take(self, client: redis.Redis, after: bool) -> None:
        """Measure now (before the load, or after draining)."""
        used = int(client.info("memory")["used_memory"])
        families = keyspace.families(client, self.prefix)
        if after:
            self.used_after, self.after = used, families
        else:
            self.used_before, self.before = used, families


def print_retained(retained: Retained, handled: int, args: argparse.Namespace) -> None:
    """Redis bytes kept per handled event: by ``used_memory`` and per key family (``MEMORY USAGE``)."""
    if not handled or not retained.used_after:
        return
    kept = f"retention shortened to {args.ttl:g} s" if args.ttl else "production retentions"
    used = retained.used_after - retained.used_before
    print(
        f"Redis retained after draining ({kept}): used_memory {used / MB:+.1f} MB = {used / handled:,.1f} bytes "
        "per handled event (INFO memory used_memory after the load drained minus before it started: everything "
        "Redis keeps, allocator overhead included)"
    )
    grown = keyspace.growth(retained.before, retained.after)
    total = sum(f.bytes for f in grown.values())
    print(
        f"  by key family (MEMORY USAGE of every key, SAMPLES 0; per-key expiry entries not counted): "
        f"{total / MB:+.1f} MB = {total / handled:,.1f} bytes per handled event"
    )
    print(f"  {'family':<16} {'keys':>9} {'MB':>8} {'bytes/event':>12}")
    for name, f in grown.items():
        if f.keys or f.bytes:
            print(f"  {name:<16} {f.keys:+9,d} {f.bytes / MB:+8.2f} {f.bytes / handled:12,.1f}")


def summarize(
    args: argparse.Namespace,
    sampler: Sampler,
    load: Load,
    duration: float,
    drained: float | None,
    retained: Retained | None = None,
) -> bool:
    """Print the summary and verdicts; True when memory is flat and queues are bounded."""
    samples = sampler.samples
    load_samples = [s for s in samples if s.phase == "load"]
    progress = sampler.progress
    print()
    print(
        f"load: {args.rate:,.0f} events/s target for {args.minutes:g} min; sent {load.sent_events:,} events, "
        f"accepted {progress.accepted_events:,} ({progress.accepted_events / max(duration, 1e-9):,.0f}/s), "
        f"handled {progress.handled_events:,}; failed requests {load.failed_requests}"
        + (f" (last: {load.last_error})" if load.failed_requests else "")
        + f"; failed handler runs {progress.failed_handlers}; most requests in flight at once {load.max_outstanding}"
    )
    print()
    print(f"memory (mean of the first vs the last third of {len(load_samples)} load samples):")
    print(f"  {'process':<12} {'first MB':>9} {'last MB':>9} {'growth MB':>10} {'growth %':>9} {'MB/min':>7}  flat")
    grown = growth(samples)
    judged = [*PROCESSES, "redis used"] if args.ttl else [p for p in PROCESSES if p != "redis"]
    for name, g in grown.items():
        note = ("yes" if g.flat else "NO") if name in judged else "(not judged: retention by design)"
        print(f"  {name:<12} {g.first:9.1f} {g.last:9.1f} {g.mb:+10.1f} {g.percent:+8.1f}% {g.slope:+7.2f}  {note}")
    if load_samples and progress.handled_events:
        used = load_samples[-1].redis_used - samples[0].redis_used
        print(
            f"  Redis used_memory grew {used:+.1f} MB over the load = {used * MB / progress.handled_events:,.0f} "
            f"bytes per handled event (last load sample minus the first: in-flight queues included)"
        )
    if retained is not None:
        print()
        print_retained(retained, progress.handled_events, args)
    flat = all(grown[name].flat for name in judged)
    print()
    bound = args.max_backlog * args.rate
    max_in_flight = max((s.in_flight for s in load_samples), default=0)
    max_oldest = max((s.oldest for s in load_samples), default=0.0)
    queue_names = sampler.dep.settings.queues.all()
    max_queues = {q: max((s.queues[q] for s in load_samples), default=0) for q in queue_names}
    print("queues (load phase maxima):")
    print(
        f"  events in flight (accepted, not handled): {max_in_flight:,} "
        f"(= {max_in_flight / args.rate:.2f} s of load; bound {args.max_backlog:g} s = {bound:,.0f} events)"
    )
    print(
        f"  intake stream: {max((s.intake for s in load_samples), default=0)} entries, oldest waited {max_oldest:.2f} s"
    )
    print(
        "  Celery queues (tasks): "
        + ", ".join(f"{q} {n}" for q, n in max_queues.items())
        + f"; all together {max((s.queued for s in load_samples), default=0)}; "
        f"unacked {max((s.unacked for s in load_samples), default=0)}"
    )
    if drained is None:
        print(f"  drained: NO (not within {args.drain_timeout:g} s after the load stopped)")
    else:
        print(f"  drained: yes, {drained:.1f} s after the load stopped")
    bounded = max_in_flight <= bound and max_oldest <= args.max_backlog and drained is not None
    third = max(1, len(load_samples) // 3)
    subs_first = max((s.channels for s in load_samples[:third]), default=0)
    subs_last = max((s.channels for s in load_samples[-third:]), default=0)
    subs_rate = slope([s.t for s in load_samples], [float(s.channels) for s in load_samples]) / 60
    subscriptions = subs_last <= max(100, 2 * subs_first)  # a leak grows with the events; a few waiters do not
    print(
        f"  Redis pub/sub channels subscribed: {samples[0].channels} at the start, max {subs_first} in the first "
        f"third, {subs_last} in the last ({subs_rate:+.1f}/s), {samples[-1].channels} after draining"
    )
    print()
    print(
        f"verdict: memory {'FLAT' if flat else 'GROWING'} (growth < {FLAT_PERCENT:g} % or < {FLAT_MB:g} MB per "
        f"process); queues {'BOUNDED' if bounded else 'UNBOUNDED'} (backlog <= {args.max_backlog:g} s of load, "
        f"drained after); pub/sub subscriptions {'BOUNDED' if subscriptions else 'GROWING (a leak)'}"
    )
    return flat and bounded and subscriptions


def plot(samples: list[Sample], load_end: float, path: Path, title: str) -> None:
    """Memory and queue lengths over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7), layout="constrained")
    memory, queues = figure.subplots(2, 1, sharex=True)
    times = [s.t for s in samples]
    for name in PROCESSES:
        memory.plot(times, [s.rss[name] for s in samples], marker=".", label=f"{name} RSS")
    memory.plot(times, [s.redis_used for s in samples], linestyle="--", label="Redis used_memory")
    memory.set_ylabel("MB")
    memory.set_ylim(bottom=0)
    memory.legend(loc="upper left", fontsize="small")
    memory.set_title(title)
    queues.plot(times, [s.intake for s in samples], marker=".", label="intake stream (entries)")
    queues.plot(times, [s.queued for s in samples], marker=".", label="Celery queues (tasks)")
    queues.plot(times, [s.unacked for s in samples], marker=".", label="unacked (tasks)")
    queues.set_ylabel("entries / tasks")
    queues.set_ylim(bottom=0)
    queues.set_xlabel("seconds since the load started")
    flight = queues.twinx()
    flight.plot(times, [s.in_flight for s in samples], color="grey", linestyle=":", label="events in flight")
    flight.plot(times, [s.channels for s in samples], color="purple", linestyle="-.", label="Redis pub/sub channels")
    flight.set_ylabel("events in flight / channels")
    flight.set_ylim(bottom=0)
    for axis in (memory, queues):
        axis.axvline(load_end, color="black", linewidth=0.8)
        axis.grid(alpha=0.3)
    lines = queues.get_legend_handles_labels()
    extra = flight.get_legend_handles_labels()
    queues.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper left", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


# Running --------------------------------------------------------------------------------------
def warm_up(dep: deploy.Deployment, servers: deploy.Servers) -> None:
    """A small round trip, so first-use costs (imports, connections) are not in the first samples."""
    accepted = post_all(dep.base_url, [json.dumps(list(make_events(500))).encode()] * 2, 2)
    wait_done(
        BatchStore(servers.client(0), 3600, Keys(dep.settings.redis_prefix)),
        [a.receipt for a in accepted],
        timeout=60.0,
    )


def soak(args: argparse.Namespace, root: Path) -> bool:
    """Run one soak; True when every verdict passes."""
    with deploy.Servers(root) as servers:
        dep = deploy.Deployment(servers, args.web, args.worker, root / "soak")
        if args.ttl:
            dep.settings = dataclasses.replace(
                dep.settings,
                dedupe_window=int(args.ttl),
                batch_record_ttl=int(args.ttl),
                batch_done_ttl=int(args.ttl),
                result_expires=int(args.ttl),
            )
        dep.start()
        try:
            warm_up(dep, servers)
            seconds = args.minutes * 60
            load = Load(dep.base_url, args.rate, seconds, args.per_request, args.clients)
            store = BatchStore(servers.client(0), dep.settings.batch_record_ttl, Keys(dep.settings.redis_prefix))
            sampler = Sampler(dep, servers, Progress(store, load))
            retained = Retained(dep.settings.redis_prefix)
            retained.take(sampler.client, after=False)
            print(
                f"soak: {args.rate:,.0f} events/s in {args.per_request}-event requests for {args.minutes:g} min, "
                f"sampling every {args.interval:g} s; web gunicorn -w 2 {args.web}, worker {args.worker}, "
                f"batcher x1; logs and data in {root}",
                flush=True,
            )
            print(HEADER, flush=True)
            print(row(sampler.take("start")), flush=True)
            load.start()
            while load.is_alive():
                load.join(timeout=max(0.0, sampler.started + (len(sampler.samples)) * args.interval - time.monotonic()))
                if load.is_alive():
                    print(row(sampler.take("load")), flush=True)
            load_end = time.monotonic() - sampler.started
            drained = drain(sampler, args)
            retained.take(sampler.client, after=True)
        finally:
            dep.stop()
    path = ROOT / "var" / "soak.png"
    title = f"soak: {args.rate:,.0f} events/s for {args.minutes:g} min (vertical line: load stops)"
    plot(sampler.samples, load_end, path, title)
    ok = summarize(args, sampler, load, load_end, drained, retained)
    print(f"plot: {path}")
    return ok


def drain(sampler: Sampler, args: argparse.Namespace) -> float | None:
    """After the load: sample until nothing waits anywhere; seconds it took, or None after the timeout."""
    stopped = time.monotonic()
    last_row = stopped
    while True:
        time.sleep(0.5)
        sample = sampler.take("drain")
        empty = not (sample.intake or sample.queued or sample.unacked or sampler.progress.pending)
        now = time.monotonic()
        if empty or now - stopped > args.drain_timeout or now - last_row >= args.interval:
            print(row(sample), flush=True)
            last_row = now
        else:
            sampler.samples.pop()  # keep the table and plot at the sampling interval
        if empty:
            return now - stopped
        if now - stopped > args.drain_timeout:
            return None


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exits 1 when a verdict fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, help="load duration (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--rate", type=float, default=3000.0, help="events/s (default 3000)")
    parser.add_argument("--per-request", type=int, default=100, help="events per POST (default 100)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads (default 4)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--max-backlog", type=float, default=5.0, help="bound of the backlog, in seconds of load")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the queues to drain")
    parser.add_argument(
        "--ttl",
        type=float,
        default=0.0,
        help="shorten dedupe window, batch-record TTL and result expiry to this many seconds "
        "(Redis then levels off and is judged too); default: production values",
    )
    parser.add_argument("--web", choices=list(deploy.WEB_MODES), default="sync", help="gunicorn mode (default sync)")
    parser.add_argument("--worker", choices=deploy.WORKER_MODES, default="prefork", help="worker mode")
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (1.0 if args.quick else 3.0)
    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    return 0 if soak(args, root) else 1


if __name__ == "__main__":
    raise SystemExit(main())
