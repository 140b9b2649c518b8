"""View and query latency over HTTP, cached and uncached, next to a plain Celery round trip.

``python -m bench.views [--quick] [--requests N] [--web sync|gthread] [--profile]``

Starts its own Redis and nx-27017, the real web (gunicorn -w 2) and Celery worker
(prefork -c 2 on the kind queues; the batcher runs too, idle), loads ``bench.modules``
(``bench.modules.views``: one trivial view, one trivial query, one memoized query), and a
plain Celery worker with the same pool on database 1 of the same Redis. Then, from one
HTTP client, one request at a time (latency, not throughput), in interleaved rounds so a
burst of load from elsewhere on the machine hits every phase alike:

1. cached: ``GET /query/bench_memo?course=x`` (memoized, cache warmed: no worker hop);
2. uncached query: ``GET /query/bench_echo?course=x`` (web → queue → worker → result);
3. uncached view: ``GET /view/bench_hello?user=x``;
4. web overhead: ``GET /query/does_not_exist`` (404: no Redis, no broker, see ``OVERHEAD``);
5. baseline: plain Celery ``echo.apply_async(...).get()`` from this process;
6. diagnosis, not targets: the same round trip (plus ``forget()``, as the web does) on a
   Celery app with *our* Celery settings (``config.celery``: our serializer, task events,
   ``task_track_started``); and the view's own task sent from this process, as web/api.py
   does, without HTTP: the gap between 5 and 3 splits into Celery settings, Insights' task
   and the web layer.

The Celery apps at module level are the baselines': ``celery -A bench.views worker -Q
bench-views-baseline`` and ``celery -A bench.views:mirror worker -Q bench-views-mirror``
(Redis URLs from ``BENCH_VIEWS_REDIS`` and ``BENCH_VIEWS_MIRROR_REDIS``).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from celery import Celery

from bench import baseline, deploy
from bench.load import percentiles
from bench.spy import Profile, Recording, py_spy
from config.celery import celery_config
from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.codec.serialization import register_kombu_serializer

QUEUE = "bench-views-baseline"
MIRROR_QUEUE = "bench-views-mirror"
TARGET_CACHED_P50_MS = 2.0
TARGET_VIEW_FACTOR = 1.3
WARM_UP = 50
OVERHEAD = (
    "web overhead = GET /query/does_not_exist: the same gunicorn worker, Flask routing, the\n"
    "  /query endpoint, _prepare up to the registry lookup, the error handler and a small JSON\n"
    "  body -- the request/response cost every view and query pays -- but no argument binding,\n"
    "  no Redis and no broker. (/schema would add serializing every function's description.)"
)

# The baseline: plain Celery with the settings of bench/baseline.py (JSON, Redis broker and
# result backend, late acknowledgement, prefetch 4), one trivial task.
app = Celery("views-baseline", set_as_current=False)
app.conf.update(
    {
        key: baseline.app.conf[key]
        for key in (
            "task_serializer",
            "result_serializer",
            "accept_content",
            "task_acks_late",
            "task_reject_on_worker_lost",
            "worker_prefetch_multiplier",
            "result_expires",
            "broker_transport_options",
            "broker_connection_retry_on_startup",
            "worker_hijack_root_logger",
        )
    },
    broker_url=os.environ.get("BENCH_VIEWS_REDIS", "redis://127.0.0.1:1/1"),
    result_backend=os.environ.get("BENCH_VIEWS_REDIS", "redis://127.0.0.1:1/1"),
    task_default_queue=QUEUE,
)


@app.task(name="views_baseline.echo")
def echo(course: str) -> dict:
    """The same small dict as the uncached query."""
    return {"course": course, "learners": 3, "ok": True}


# The diagnosis: the same task on a Celery app configured exactly like ours (config/celery.py).
register_kombu_serializer()
_MIRROR_URL = os.environ.get("BENCH_VIEWS_MIRROR_REDIS", "redis://127.0.0.1:1/2")
mirror = Celery("views-mirror", set_as_current=False)
mirror.conf.update(
    {**celery_config(Settings(redis_url=_MIRROR_URL)), "task_routes": {}, "task_default_queue": MIRROR_QUEUE}
)


@mirror.task(name="views_mirror.echo")
def mirror_echo(course: str) -> dict:
    """The same small dict as the uncached query."""
    return {"course": course, "learners": 3, "ok": True}


class Client:
    """GETs over one persistent HTTP connection (reopened when the server closes it)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        self.closed = 0  # responses after which the server closed the connection

    def get(self, path: str, status: int = 200) -> bytes:
        """One GET; raises unless it answers ``status``."""
        self.connection.request("GET", path, headers={"Connection": "keep-alive"})
        response = self.connection.getresponse()
        body = response.read()
        if response.will_close:
            self.closed += 1
        if response.status != status:
            raise RuntimeError(f"GET {path} answered {response.status} (expected {status}): {body[:300]!r}")
        return body

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def timed(call, count: int) -> list[float]:
    """Milliseconds of ``count`` sequential calls."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def phases(client: Client, insights: Insights) -> dict[str, tuple[str, object]]:
    """The measured phases: name -> (what it does, one call)."""
    view_task = insights.celery.tasks["view.bench_hello"]

    def direct() -> None:
        result = view_task.apply_async(kwargs={"user": "x"})  # what web/api.py's _await does, minus HTTP
        try:
            assert result.get(timeout=30).startswith("<html>")
        finally:
            result.forget()

    def round_trip() -> None:
        answer = echo.apply_async(("x",)).get(timeout=30)
        assert answer["course"] == "x", answer

    def mirror_round_trip() -> None:
        result = mirror_echo.apply_async(kwargs={"course": "x"})
        try:
            assert result.get(timeout=30)["course"] == "x"
        finally:
            result.forget()

    return {
        "cached query": (
            "GET /query/bench_memo?course=x (from Redis)",
            lambda: client.get("/query/bench_memo?course=x"),
        ),
        "uncached query": ("GET /query/bench_echo?course=x", lambda: client.get("/query/bench_echo?course=x")),
        "uncached view": ("GET /view/bench_hello?user=x", lambda: client.get("/view/bench_hello?user=x")),
        "web overhead": ("GET /query/does_not_exist (404)", lambda: client.get("/query/does_not_exist", 404)),
        "baseline": ("plain Celery apply_async().get()", round_trip),
        "our settings": ("diagnosis: the same on our Celery settings, + forget()", mirror_round_trip),
        "view, no HTTP": ("diagnosis: view.bench_hello apply_async().get(), forget() here", direct),
    }


def check(client: Client) -> None:
    """The answers are what the module returns (so we time the right thing)."""
    assert client.get("/view/bench_hello?user=x") == b"<html><body>Hello x!</body></html>"
    assert json.loads(client.get("/query/bench_memo?course=x"))["memoized"] is True
    assert json.loads(client.get("/query/bench_echo?course=x"))["ok"] is True


def start_baseline(servers: deploy.Servers, logs: Path, which: str = "baseline"):
    """A baseline Celery worker (prefork -c 2, like ours) on its own database of our Redis:
    ``baseline`` (plain, db 1) or ``mirror`` (our Celery settings, db 2)."""
    celery, target, queue, db, variable = {
        "baseline": (app, "bench.views", QUEUE, 1, "BENCH_VIEWS_REDIS"),
        "mirror": (mirror, "bench.views:mirror", MIRROR_QUEUE, 2, "BENCH_VIEWS_MIRROR_REDIS"),
    }[which]
    url = servers.url(db)
    servers.client(db).flushdb()
    celery.conf.update(broker_url=url, result_backend=url)
    command = dataclasses.replace(deploy.COMMANDS, app=target).worker(queue, concurrency=2, name=f"views-{which}@%h")
    process = deploy.start(command, deploy.child_env({variable: url}), logs / f"{which}-worker.log")
    try:
        deploy.wait_until(lambda: deploy.ping_workers(url) >= 1, deploy.START_TIMEOUT, f"the {which} worker", [process])
    except BaseException:
        deploy.stop(process)
        raise
    return process


def measure(calls: dict[str, tuple[str, object]], requests: int, rounds: int) -> dict[str, list[float]]:
    """``requests`` timed calls of every phase, in ``rounds`` interleaved rounds, after a warm-up."""
    for _, call in calls.values():
        timed(call, WARM_UP)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    per_round = [requests // rounds + (1 if k < requests % rounds else 0) for k in range(rounds)]
    for k, count in enumerate(per_round):
        for name, (_, call) in calls.items():
            samples[name] += timed(call, count)
        print(f"  round {k + 1}/{rounds}: " + ", ".join(f"{n} {_p50(samples[n]):.2f}" for n in samples)
              + " ms (p50 so far)", flush=True)  # fmt: skip
    return samples


def _p50(values: list[float]) -> float:
    return percentiles(values)["p50"] if values else float("nan")


def profile(dep: deploy.Deployment, client: Client, requests: int, root: Path) -> list[Profile]:
    """py-spy on web and worker during ``requests`` further uncached views (not the measured run)."""
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    recordings = [
        Recording(name, pid, root / f"profile-{name}.txt").start(executable, rate=1000)
        for name, pid in dep.pids().items()
        if name != "batcher"
    ]
    time.sleep(1.0)  # let py-spy attach
    try:
        timed(lambda: client.get("/view/bench_hello?user=x"), requests)
    finally:
        for recording in recordings:
            recording.stop()
    return [r.summary(top=15) for r in recordings]


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def report(args: argparse.Namespace, calls: dict, samples: dict[str, list[float]], notes: dict) -> None:
    """The percentile table, the targets and the ratios."""
    stats = {name: percentiles(values) for name, values in samples.items()}
    print()
    print(f"{'phase':<16} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  (ms, {args.requests} requests each)  what")
    print("-" * 110)
    for name, (what, _) in calls.items():
        s = stats[name]
        print(f"{name:<16} {s['p50']:8.2f} {s['p90']:8.2f} {s['p99']:8.2f} {s['max']:8.2f}  {what}")
    print()
    print(OVERHEAD)
    cached, view, query = stats["cached query"]["p50"], stats["uncached view"]["p50"], stats["uncached query"]["p50"]
    base, web = stats["baseline"]["p50"], stats["web overhead"]["p50"]
    bound = TARGET_VIEW_FACTOR * base + web
    print()
    print("targets (p50):")
    print(f"  cached query            {cached:6.2f} ms <= {TARGET_CACHED_P50_MS:g} ms"
          f"                                   {verdict(cached <= TARGET_CACHED_P50_MS)}")  # fmt: skip
    print(f"  uncached view           {view:6.2f} ms <= {TARGET_VIEW_FACTOR:g} x {base:.2f} (baseline) + {web:.2f} "
          f"(web overhead) = {bound:.2f} ms   {verdict(view <= bound)}")  # fmt: skip
    print("ratios (p50):")
    print(f"  uncached view / baseline                   {view / base:5.2f}x")
    print(f"  uncached query / baseline                  {query / base:5.2f}x")
    print(
        f"  (uncached view - web overhead) / baseline  {(view - web) / base:5.2f}x   (the worker hop vs plain Celery)"
    )
    print(f"  uncached view / bound                      {view / bound:5.2f}x")
    ours = stats["our settings"]["p50"]
    print(f"  our settings / baseline                    {ours / base:5.2f}x   (Celery settings alone, no web)")
    direct = stats["view, no HTTP"]["p50"]
    print(f"  view, no HTTP / our settings               {direct / ours:5.2f}x   (Insights' tasks vs plain ones)")
    print(f"  uncached view - view, no HTTP              {view - direct:5.2f} ms   (the web layer on the view path)")
    print(f"  cached query / web overhead                {cached / web:5.2f}x   (memo lookup: key, one Redis GET)")
    print(f"  uncached query / cached query              {query / cached:5.2f}x")
    print()
    print(f"configuration: gunicorn -w 2 {args.web} ; celery worker prefork -c 2 on {notes['queues']} ; "
          f"baseline: celery prefork -c 2 on {QUEUE} (db 1 of the same Redis) ; batcher idle")  # fmt: skip
    print(
        f"HTTP: one http.client connection; server closed it after {notes['closed']} of {notes['responses']} "
        f"responses{' (gunicorn sync workers do not keep connections alive)' if notes['closed'] else ''}"
    )
    print(f"{args.rounds} interleaved rounds; load average before {notes['load_before']}, after {notes['load_after']}")
    for prof in notes.get("profiles", []):
        print()
        print(f"py-spy {prof.name} during {args.requests} uncached views: {prof.samples} samples (active threads)")
        print("  self:")
        for frame, count in prof.self_top:
            print(f"    {count / max(1, prof.samples) * 100:5.1f}%  {frame}")
        print("  inclusive (our code):")
        for frame, count in prof.inclusive_top:
            print(f"    {count / max(1, prof.samples) * 100:5.1f}%  {frame}")
        print("  socket I/O by caller:")
        for frame, count in prof.io_callers:
            print(f"    {count / max(1, prof.samples) * 100:5.1f}%  {frame}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; misses of targets do not fail the process."""
    parser = argparse.ArgumentParser(prog="python -m bench.views", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 requests per phase instead of 2000")
    parser.add_argument("--requests", type=int, help="requests per phase (default 2000, quick 300)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--web", choices=list(deploy.WEB_MODES), default="sync", help="gunicorn mode (default sync)")
    parser.add_argument("--profile", action="store_true", help="then py-spy web and worker during uncached views")
    args = parser.parse_args(argv)
    args.requests = args.requests or (300 if args.quick else 2000)
    args.rounds = max(1, min(args.rounds, args.requests))

    root = Path(tempfile.mkdtemp(prefix="bench-views-"))
    print(f"logs and data in {root}", flush=True)
    notes: dict = {}
    with deploy.Servers(root) as servers:
        dep = deploy.Deployment(servers, args.web, "prefork", root / "main").start()
        notes["queues"] = ",".join(dep.settings.queues.all())
        workers = []
        insights = None
        client = Client(dep.base_url)
        try:
            workers.append(start_baseline(servers, root, "baseline"))
            workers.append(start_baseline(servers, root, "mirror"))
            check(client)  # also warms the memoized query's cache
            insights = create_insights(dep.settings)
            calls = phases(client, insights)
            print(f"measuring {args.requests} requests per phase in {args.rounds} rounds ...", flush=True)
            notes["load_before"] = _load()
            samples = measure(calls, args.requests, args.rounds)
            notes["load_after"] = _load()
            notes["closed"] = client.closed
            notes["responses"] = 3 + (WARM_UP + args.requests) * 4
            if args.profile:
                print("profiling uncached views ...", flush=True)
                notes["profiles"] = profile(dep, client, args.requests, root)
        finally:
            client.close()
            for celery in (app, mirror, *([insights.celery] if insights else [])):
                celery.backend.result_consumer.stop()
            for worker in workers:
                deploy.stop(worker)
            dep.stop()
    report(args, calls, samples, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
