"""Ingest benchmark: end-to-end throughput and latency of ours vs plain Celery.

``python -m bench.ingest [--quick] [--events N] [--rate R] [--seconds S] [--profile]``

Starts its own Redis and nx-27017, the real web (gunicorn), batcher and Celery worker
processes with four trivial handlers (``bench.modules``), and measures:

1. throughput: 500-event POSTs as fast as a few client threads go, until every receipt's
   batches are recorded done (picking the faster web and worker configuration first);
2. latency at a steady rate: 100-event POSTs on a fixed schedule; per request, the latest
   "finished" of its batch records minus the arrival of its 202;
3. the baseline: plain Celery on the same Redis, one chord of four tasks per 100 events.

With ``--profile``, a further throughput run samples web, batcher and worker with py-spy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import baseline, deploy, sizing
from bench.load import make_bodies, make_events, percentiles, post_all, post_paced, wait_done
from bench.spy import Profile, Recording, py_spy
from tasks.pipeline.batch_store import BatchStore
from tasks.storage.keys import Keys

TARGET_RATE = 50_000
TARGET_RATIO = 3.0
TARGET_P99_MS = 250.0


@dataclass
class Throughput:
    """Figures of one throughput run."""

    events: int
    done: int
    seconds: float
    post_seconds: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Handled events per second, first POST to last batch finished."""
        return self.done / self.seconds if self.seconds > 0 else 0.0


def process_cpu(dep: deploy.Deployment, servers: deploy.Servers) -> dict[str, float]:
    """CPU seconds so far of every process of the deployment, Redis and this process."""
    cpu = {name: deploy.cpu_seconds(pid) for name, pid in dep.pids().items()}
    cpu["redis"] = deploy.cpu_seconds(servers.redis.pid or 0)
    cpu["mongo"] = deploy.cpu_seconds(servers.mongo.pid or 0)
    own = psutil.Process().cpu_times()
    cpu["bench (load generator)"] = own.user + own.system
    return cpu


def throughput(
    dep: deploy.Deployment, servers: deploy.Servers, events: int, clients: int, per_request: int = 500
) -> Throughput:
    """POST ``events`` as fast as ``clients`` threads can; time until every receipt is done."""
    bodies = make_bodies(events, per_request, uuid.uuid4().hex[:12])
    store = BatchStore(servers.client(0), 3600, Keys(dep.settings.redis_prefix))
    before = process_cpu(dep, servers)
    accepted = post_all(dep.base_url, bodies, clients)
    posted = time.time()
    finished = wait_done(store, [a.receipt for a in accepted], timeout=max(60.0, events / 1000))
    after = process_cpu(dep, servers)
    first = min(a.sent for a in accepted)
    done = sum(a.events for a in accepted if a.receipt in finished)
    end = max(finished.values(), default=time.time())
    cpu = {name: after[name] - before.get(name, 0.0) for name in after}
    return Throughput(events, done, end - first, posted - first, cpu)


def latency(dep: deploy.Deployment, servers: deploy.Servers, rate: float, seconds: float) -> dict[str, float]:
    """Steady load of 100-event POSTs; percentiles (ms) of batches finished minus 202 arrival."""
    per_request = 100
    requests = max(1, round(rate * seconds / per_request))
    bodies = make_bodies(requests * per_request, per_request, uuid.uuid4().hex[:12])
    accepted = post_paced(dep.base_url, bodies, per_request / rate)
    finished = wait_done(
        BatchStore(servers.client(0), 3600, Keys(dep.settings.redis_prefix)),
        [a.receipt for a in accepted],
        timeout=60.0,
    )
    waits = [(finished[a.receipt] - a.accepted) * 1000 for a in accepted if a.receipt in finished]
    answer = percentiles(waits)
    answer["requests"] = len(accepted)
    answer["lost"] = len(accepted) - len(waits)
    answer["http_p50"] = percentiles([(a.accepted - a.sent) * 1000 for a in accepted])["p50"]
    return answer


def warm_up(dep: deploy.Deployment, servers: deploy.Servers) -> None:
    """One small round trip, so first-use costs (connections, imports) are not measured."""
    accepted = post_all(dep.base_url, make_bodies(1000, 500, uuid.uuid4().hex[:12]), 2)
    wait_done(
        BatchStore(servers.client(0), 3600, Keys(dep.settings.redis_prefix)),
        [a.receipt for a in accepted],
        timeout=60.0,
    )


def trial(
    servers: deploy.Servers, root: Path, web: str, worker: str, events: int, clients: int, **options: Any
) -> float:
    """Throughput (events/s) of one configuration, on freshly started processes."""
    dep = deploy.Deployment(servers, web, worker, root / f"trial-{web}-{worker}", **options).start()
    try:
        warm_up(dep, servers)
        result = throughput(dep, servers, events, clients)
    finally:
        dep.stop()
    print(f"  trial web={web:<8} worker={worker:<8} {result.rate:>9,.0f} events/s  ({events:,} events)", flush=True)
    return result.rate


def choose(
    servers: deploy.Servers, root: Path, events: int, clients: int, **options: Any
) -> tuple[str, str, dict[str, float]]:
    """Pick the faster web mode (with prefork), then the faster worker mode (with that web)."""
    rates = {}
    for web in deploy.WEB_MODES:
        rates[f"{web}/prefork"] = trial(servers, root, web, "prefork", events, clients, **options)
    best_web = max(deploy.WEB_MODES, key=lambda w: rates[f"{w}/prefork"])
    rates[f"{best_web}/solo2"] = trial(servers, root, best_web, "solo2", events, clients, **options)
    best_worker = max(deploy.WORKER_MODES, key=lambda w: rates[f"{best_web}/{w}"])
    return best_web, best_worker, rates


LOG_BACKENDS = ("local", "mongo")
TARGET_LOG_RATIO = 0.9  # the shared (MongoDB) log may cost at most 10% of the local files' throughput


def compare_logs(
    servers: deploy.Servers, root: Path, web: str, worker: str, events: int, clients: int, rounds: int, **options: Any
) -> dict[str, list[Throughput]]:
    """The same throughput run with each event-log backend, on fresh deployments, in alternating
    rounds (so load from elsewhere on the machine hits both alike)."""
    runs: dict[str, list[Throughput]] = {backend: [] for backend in LOG_BACKENDS}
    for number in range(rounds):
        order = LOG_BACKENDS if number % 2 == 0 else LOG_BACKENDS[::-1]
        for backend in order:
            logs = root / f"log-{backend}-{number}"
            dep = deploy.Deployment(servers, web, worker, logs, event_log=backend, **options).start()
            try:
                warm_up(dep, servers)
                result = throughput(dep, servers, events, clients)
            finally:
                dep.stop()
            runs[backend].append(result)
            print(f"  round {number + 1} event log {backend:<5} {result.rate:>9,.0f} events/s", flush=True)
    return runs


def report_logs(runs: dict[str, list[Throughput]], events: int) -> None:
    """Print each backend's throughput (median of the rounds), the batcher's CPU and the ratio."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    rates = {backend: median([r.rate for r in results]) for backend, results in runs.items()}
    print()
    print(f"event log backends ({len(runs['local'])} rounds of {events:,} events each, median):")
    for backend, results in runs.items():
        batcher = median([r.cpu.get("batcher", 0.0) / max(1, r.done) * 1e6 for r in results])
        mongo = median([r.cpu.get("mongo", 0.0) / max(1, r.done) * 1e6 for r in results])
        print(f"  {backend:<6} {rates[backend]:>9,.0f} events/s   CPU ms per 1,000 events: batcher {batcher:6.1f}, "
              f"nx-27017 {mongo:5.1f}   rounds: " + ", ".join(f"{r.rate:,.0f}" for r in results))  # fmt: skip
    ratio = rates["mongo"] / rates["local"] if rates["local"] else float("nan")
    print(f"  ratio mongo/local {ratio:.3f}  {verdict(ratio >= TARGET_LOG_RATIO)} (>= {TARGET_LOG_RATIO:g})")
    # The two runs of a round follow each other, so load from elsewhere hits them more alike than other rounds.
    pairs = [m.rate / l.rate for l, m in zip(runs["local"], runs["mongo"], strict=True) if l.rate]  # noqa: E741
    if pairs:
        print(f"  per round mongo/local: {', '.join(f'{p:.2f}' for p in pairs)}; median {median(pairs):.3f}")


def profile_run(
    dep: deploy.Deployment, servers: deploy.Servers, events: int, clients: int, root: Path
) -> tuple[Throughput, list[Profile]]:
    """A throughput run with py-spy attached to web, batcher and every worker."""
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    recordings = [
        Recording(name, pid, root / f"profile-{name}.txt").start(executable) for name, pid in dep.pids().items()
    ]
    time.sleep(1.0)  # let py-spy attach
    try:
        result = throughput(dep, servers, events, clients)
    finally:
        for recording in recordings:
            recording.stop()
    return result, [r.summary() for r in recordings]


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def report(args: argparse.Namespace, figures: dict) -> None:
    """Print the results table, configurations, CPU seconds and targets."""
    ours: Throughput = figures["ours"]
    base = figures["baseline"]
    lat = figures["latency"]
    ratio = ours.rate / base["events_per_s"] if base["events_per_s"] else float("inf")
    rows = [
        ("ours: throughput", f"{ours.rate:,.0f} events/s", f"{ours.done:,} events in {ours.seconds:.2f} s "
         f"(POSTs took {ours.post_seconds:.2f} s)", f"{verdict(ours.rate >= TARGET_RATE)} (>= {TARGET_RATE:,})"),
        ("baseline: throughput", f"{base['events_per_s']:,.0f} events/s", f"{base['events']:,} events, "
         f"{base['chords_done']}/{base['chords']} chords in {base['seconds']:.2f} s "
         f"(sending {base['send_seconds']:.2f} s)",
         ""),
        ("ratio ours/baseline", f"{ratio:.2f}x", "", f"{verdict(ratio >= TARGET_RATIO)} (>= {TARGET_RATIO:g}x)"),
        ("latency p50", f"{lat.get('p50', float('nan')):.0f} ms",
         f"at {args.rate:,.0f}/s for {args.seconds:g} s, {lat['requests']} requests, {lat['lost']} lost", ""),
        ("latency p90", f"{lat.get('p90', float('nan')):.0f} ms", "", ""),
        ("latency p99", f"{lat.get('p99', float('nan')):.0f} ms", "",
         f"{verdict(lat.get('p99', 1e9) <= TARGET_P99_MS)} (<= {TARGET_P99_MS:g} ms)"),
        ("latency max", f"{lat.get('max', float('nan')):.0f} ms",
         f"(POST round trip p50 {lat['http_p50']:.1f} ms)", ""),
    ]  # fmt: skip
    print()
    print(f"{'figure':<22} {'value':>18}  {'target':<20} detail")
    print("-" * 110)
    for name, value, detail, target in rows:
        print(f"{name:<22} {value:>18}  {target:<20} {detail}")
    print()
    print(f"configuration: web = gunicorn -w 2 {figures['web']} ; worker = {figures['worker']} "
          f"({'celery -c 2 prefork' if figures['worker'] == 'prefork' else 'two celery -P solo workers'}) ; "
          f"batcher x1 ; batch_size {args.batch_size} ; "
          f"handlers: {', '.join(figures['handlers'])}")  # fmt: skip
    if figures.get("trials"):
        print("trials (events/s): " + ", ".join(f"{k} {v:,.0f}" for k, v in figures["trials"].items()))
    print(f"baseline worker pool: same as ours ({figures['worker']}); 100 events per chord, 4 tasks + body")
    print()
    print(f"CPU seconds during the throughput phase ({ours.seconds:.2f} s wall, 2 cores = "
          f"{2 * ours.seconds:.2f} CPU-s available):")  # fmt: skip
    for name, seconds in sorted(ours.cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {seconds:7.2f} s  ({seconds / ours.seconds * 100:5.1f}% of one core)")
    print("CPU seconds of the baseline worker(s): " + ", ".join(f"{k} {v:.2f} s" for k, v in base["cpu"].items()))
    for profile in figures.get("profiles", []):
        print()
        print(f"py-spy {profile.name}: {profile.samples} samples (active threads only)")
        print("  self:")
        for frame, count in profile.self_top:
            print(f"    {count / max(1, profile.samples) * 100:5.1f}%  {frame}")
        for title, rows in (
            ("inclusive (our code)", profile.inclusive_top),
            ("socket I/O by caller", profile.io_callers),
        ):
            print(f"  {title}:")
            for frame, count in rows:
                print(f"    {count / max(1, profile.samples) * 100:5.1f}%  {frame}")
    if figures.get("profile_run"):
        print(f"(throughput while profiled: {figures['profile_run'].rate:,.0f} events/s)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; misses of targets do not fail the process."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (20k events, 4 s latency, 10k baseline)")
    parser.add_argument("--events", type=int, help="events of the throughput run (default 100k, quick 20k)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s of the latency run (default 2000)")
    parser.add_argument("--seconds", type=float, help="duration of the latency run (default 10, quick 4)")
    parser.add_argument("--baseline-events", type=int, help="events of the baseline run (default 50k, quick 10k)")
    parser.add_argument("--trial-events", type=int, help="events per configuration trial (default 30k, quick 10k)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads of the throughput run")
    parser.add_argument("--web", choices=list(deploy.WEB_MODES), help="skip the trials: use this gunicorn mode")
    parser.add_argument("--worker", choices=deploy.WORKER_MODES, help="skip the trials: use this worker mode")
    parser.add_argument("--batch-size", type=int, default=500, help="Settings.batch_size of the deployment")
    parser.add_argument("--profile", action="store_true", help="also profile a throughput run with py-spy")
    parser.add_argument("--keep", action="store_true", help="print where the logs are and keep them")
    parser.add_argument(
        "--compare-logs", action="store_true",
        help="instead of the figures above: the throughput run with the local-files and the MongoDB event log, "
        "in alternating rounds, and their ratio",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, help="rounds of --compare-logs (default 3, quick 2)")
    sizing.add_arguments(parser)
    args = parser.parse_args(argv)
    args.events = args.events or (20_000 if args.quick else 100_000)
    args.seconds = args.seconds or (4.0 if args.quick else 10.0)
    args.baseline_events = args.baseline_events or (10_000 if args.quick else 50_000)
    args.trial_events = args.trial_events or (10_000 if args.quick else 30_000)

    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    print(f"logs and data in {root}", flush=True)
    figures: dict = {}
    options = {"batch_size": args.batch_size}
    with deploy.Servers(root) as servers:
        if args.modules:  # bench/sizing.py: no configuration trials, prefork workers
            return sizing.main(servers, root, args, args.web or "gthread", **options)
        if args.web and args.worker:
            web, worker = args.web, args.worker
        else:
            print("choosing the configuration:", flush=True)
            web, worker, figures["trials"] = choose(servers, root, args.trial_events, args.clients, **options)
            web, worker = args.web or web, args.worker or worker
        figures["web"], figures["worker"] = web, worker
        if args.compare_logs:
            rounds = args.rounds or (2 if args.quick else 3)
            print(f"event log comparison: web={web} worker={worker}, {rounds} rounds ...", flush=True)
            runs = compare_logs(servers, root, web, worker, args.events, args.clients, rounds, **options)
            report_logs(runs, args.events)
            return 0
        dep = deploy.Deployment(servers, web, worker, root / "main", **options).start()
        try:
            figures["handlers"] = dep.handlers()
            warm_up(dep, servers)
            print(f"throughput run: {args.events:,} events ...", flush=True)
            figures["ours"] = throughput(dep, servers, args.events, args.clients)
            print(f"  {figures['ours'].rate:,.0f} events/s", flush=True)
            print(f"latency run: {args.rate:,.0f} events/s for {args.seconds:g} s ...", flush=True)
            figures["latency"] = latency(dep, servers, args.rate, args.seconds)
            if args.profile:
                print("profiled throughput run ...", flush=True)
                run, figures["profiles"] = profile_run(dep, servers, min(args.events, 40_000), args.clients, root)
                figures["profile_run"] = run
        finally:
            dep.stop()
        print(f"baseline: {args.baseline_events:,} events as chords of 100 ...", flush=True)
        events = list(make_events(args.baseline_events, uuid.uuid4().hex[:12]))
        batches = [events[i : i + 100] for i in range(0, len(events), 100)]
        figures["baseline"] = baseline.run(servers, batches, worker, root)
    report(args, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
