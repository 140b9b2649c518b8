"""The batcher's ceiling: events/s and CPU per 1,000 events of the one active batcher, alone.

``python -m bench.batcher [--events N] [--rounds R] [--handlers 1,4,10] [--logs local,mongo]
[--format openedx|xapi] [--base REV] [--profile]``

Per-user and per-resource order need one active batcher cluster-wide (README, *Scaling*), so
its CPU per event caps the events/s of a whole deployment. This benchmark measures it with the
batcher as the only bottleneck: its own Redis and nx-27017 (``bench.deploy.Servers``), no web,
no worker (the broker just holds the chords' messages). Each drain runs in a fresh process:
it fills the intake stream with ``N`` realistic events (``tasks.synthetic``'s simulated course,
rendered as Open edX tracking-log events, ~1 KB each, or xAPI statements) in 500-event entries
as the web app stores them (``_accept``), warms a batcher up on two entries, then
times it draining the rest to dispatched chords (``Batcher.step`` until the stream is empty:
every entry dispatched, logged and acknowledged).

Configurations — event log ``local``/``mongo`` by 1, 4 or 10 trivial handlers
(``bench.fanout.h1``, ``bench.modules`` as in ``bench.ingest``, ``bench.fanout.h10``) — run in interleaved
rounds (each round in another order), so load from elsewhere on the shared machine hits them
alike. Per configuration it prints the medians of: events/s (wall), CPU ms per 1,000 events of
the batcher process (every thread), of its main thread (the serial part: what caps the
deployment), of Redis (``INFO`` ``used_cpu_*``) and of nx-27017, and the ceiling the batcher's
CPU allows on one core (1e6 / CPU ms per 1,000 events). ``web`` is the CPU of accepting the events
beforehand as the web app does (``parse_events`` and storing the entry; not Flask): the web app
scales out, so CPU moved there from the batcher raises the ceiling.

``--base REV`` (repeatable) also runs every configuration with the code of git revision ``REV``
(``git archive`` into a temporary directory; the drain runs there with this file), interleaved
with this tree's, and prints the ratios this/REV of events/s and of CPU per event: before and
after figures measured in the same run. ``--profile`` then runs one more drain per code version
(mongo log, 4 handlers) under cProfile and prints the top functions of the batcher's main
thread by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PER_ENTRY = 500
HANDLER_MODULES = {1: "bench.fanout.h1", 4: "bench.modules", 10: "bench.fanout.h10"}
HERE = Path(__file__).resolve().parent.parent  # this tree (bench/ lives in it)


@dataclass
class Drain:
    """One drain: events, wall seconds, CPU seconds of the batcher (all threads, main thread), Redis, nx-27017."""

    events: int
    wall: float
    cpu: float
    main: float
    redis: float
    mongo: float
    web: float  # CPU seconds of accepting the entries as the web app does (parse_events, submit): not the batcher's

    def per_thousand(self, value: float) -> float:
        """``value`` seconds as milliseconds per 1,000 events."""
        return value * 1e6 / self.events


# The drain, run in a child process (possibly with another revision's code on sys.path) ----------
def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _accept(app: Any, body: str) -> None:
    """Parse a request body and store its events in the intake stream as ``web/intake.py`` does in this code
    version: as sent (``submit_json``) when the body is a verbatim array, before the web app derived the
    batcher's per-event work (``tasks.pipeline.stream.entry_fields``); with ``submit`` since."""
    from tasks.pipeline import stream
    from tasks.pipeline.parsing import parse_events

    parsed = parse_events(body.encode())
    if hasattr(stream, "entry_fields") or not parsed.verbatim:
        app.intake.submit(parsed.events, sender="bench")
    else:
        app.intake.submit_json(body, len(parsed.events), sender="bench")


def drain(spec: dict[str, Any]) -> Drain:
    """Fill the intake with the entries of ``spec["entries"]`` (a file of JSON lines) and time a
    fresh batcher draining them with ``spec``'s event log and handler module."""
    import psutil
    import redis

    from bench import deploy
    from config.settings import Settings
    from tasks.app import create_insights
    from tasks.pipeline.batcher import Batcher
    from tasks.storage.mongo import event_log_database

    root = Path(spec["root"])
    settings = Settings(
        redis_url=spec["redis"],
        mongo_url=spec["mongo"],
        data_dir=root / "data",
        fs_root=root / "data" / "files",
        module_packages=("modules", spec["handlers"]),
        exclude_modules=deploy.BUILTIN_MODULES,
        event_log=spec["log"],
    )
    client = redis.Redis.from_url(spec["redis"])
    client.flushdb()
    app = create_insights(settings)
    app.services.mongo.drop_database(event_log_database(settings.mongo_db_prefix))
    entries = Path(spec["entries"]).read_text().splitlines()
    batcher = Batcher(app, consumer="bench")
    batcher.ensure_group()
    for body in entries[:2]:  # warm up: connections, indexes, first-use costs
        _accept(app, body)
    while app.intake.backlog() or batcher.pending:
        batcher.step(max_block=0.05)
    web_before = time.process_time()
    for body in entries[2:]:
        _accept(app, body)
    web = time.process_time() - web_before
    events = PER_ENTRY * (len(entries) - 2)
    mongo = psutil.Process(int(spec["mongo_pid"]))
    profile = cProfile.Profile(time.thread_time) if spec.get("profile") else None  # CPU of the main thread
    mongo_before, redis_before = sum(mongo.cpu_times()[:2]), _redis_cpu(client)
    thread_before, process_before = time.thread_time(), time.process_time()
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    while app.intake.backlog() or batcher.pending:
        batcher.step(max_block=0.05)
    batcher.close()  # waits for any event-log write still under way (none: entries are acknowledged after it)
    if profile is not None:
        profile.disable()
    wall = time.perf_counter() - start
    result = Drain(
        events,
        wall,
        time.process_time() - process_before,
        time.thread_time() - thread_before,
        _redis_cpu(client) - redis_before,
        sum(mongo.cpu_times()[:2]) - mongo_before,
        web,
    )
    if profile is not None:
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).strip_dirs().sort_stats(key).print_stats(int(spec["profile"]))
            print(f"--- top {spec['profile']} by {key} ---", file=sys.stderr)
            print("\n".join(out.getvalue().splitlines()[4:]), file=sys.stderr)
    return result


def child(spec_json: str) -> int:
    """Run one drain (``spec_json``) and print its ``Drain`` as JSON on the last line of stdout."""
    result = drain(json.loads(spec_json))
    print(json.dumps(asdict(result)), flush=True)
    return 0


# The parent: servers, events, interleaved rounds ----------------------------------------------------
def make_entries(count: int, form: str) -> list[str]:
    """``count`` simulated events (rounded up to whole entries) as 500-event JSON arrays."""
    from tasks import synthetic

    render = synthetic.to_openedx if form == "openedx" else synthetic.to_xapi
    wanted = -(-count // PER_ENTRY) * PER_ENTRY + 2 * PER_ENTRY  # and two entries to warm up
    events: list[dict[str, Any]] = []
    students = max(50, wanted // 100)
    for activity in synthetic.simulate(synthetic.Config(students=students, days=14)):
        events.append(render(activity))
        if len(events) == wanted:
            break
    if len(events) < wanted:
        raise SystemExit(f"the simulation gave {len(events)} events, fewer than {wanted}")
    return [json.dumps(events[i : i + PER_ENTRY], separators=(",", ":")) for i in range(0, wanted, PER_ENTRY)]


def export(revision: str, into: Path) -> Path:
    """The tree of git ``revision`` of this repository, extracted into ``into``, with this tree's ``bench/fanout``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(HERE), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copytree(HERE / "bench" / "fanout", into / "bench" / "fanout", dirs_exist_ok=True)  # the handler modules
    return into


def run_child(tree: Path, spec: dict[str, Any]) -> Drain:
    """One drain in a fresh process importing the code of ``tree`` (this file runs as a script)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSIGHTS_", "QUEUE_"))}
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if spec.get("profile"):
        print(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"drain failed ({done.returncode}): {done.stderr[-3000:]}")
    return Drain(**json.loads(done.stdout.strip().splitlines()[-1]))


def summary(runs: list[Drain]) -> dict[str, float]:
    """Medians of a configuration's drains."""
    return {
        "events/s": statistics.median(r.events / r.wall for r in runs),
        "cpu": statistics.median(r.per_thousand(r.cpu) for r in runs),
        "main": statistics.median(r.per_thousand(r.main) for r in runs),
        "redis": statistics.median(r.per_thousand(r.redis) for r in runs),
        "mongo": statistics.median(r.per_thousand(r.mongo) for r in runs),
        "web": statistics.median(r.per_thousand(r.web) for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    """Interleave drains of every configuration (and code version); print the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.batcher", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per drain (default 20k)")
    parser.add_argument("--rounds", type=int, default=3, help="drains per configuration (default 3)")
    parser.add_argument("--handlers", default="1,4,10", help="handler counts (of 1, 4, 10; default all)")
    parser.add_argument("--logs", default="local,mongo", help="event logs (default local,mongo)")
    parser.add_argument("--format", choices=("openedx", "xapi"), default="openedx", help="event format")
    parser.add_argument("--base", metavar="REV", action="append", default=[],
                        help="also run the code of git revision REV, interleaved (repeatable)")  # fmt: skip
    parser.add_argument("--profile", type=int, nargs="?", const=25, default=0, metavar="N",
                        help="then profile a drain per code version (mongo, 4 handlers): top N functions")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)

    from bench import deploy  # the parent needs this tree's code; a child imports its own

    handlers = [int(h) for h in args.handlers.split(",")]
    logs = args.logs.split(",")
    root = Path(tempfile.mkdtemp(prefix="bench-batcher-"))
    entries_file = root / "entries.jsonl"
    entries = make_entries(args.events, args.format)
    entries_file.write_text("\n".join(entries) + "\n")
    size = sum(len(e) for e in entries) / (PER_ENTRY * len(entries))
    trees = {rev: export(rev, root / f"tree-{number}") for number, rev in enumerate(args.base)}
    trees["this"] = HERE
    configs = [(tree, log, count) for log in logs for count in handlers for tree in trees]
    runs: dict[tuple[str, str, int], list[Drain]] = {c: [] for c in configs}
    count = PER_ENTRY * (len(entries) - 2)
    print(f"{count:,} {args.format} events per drain ({size:,.0f} bytes each), {args.rounds} rounds, "
          f"{len(configs)} configurations; CPU ms per 1,000 events", flush=True)  # fmt: skip
    with deploy.Servers(root) as servers:
        base_spec = {
            "redis": servers.url(0),
            "mongo": servers.mongo.url,
            "mongo_pid": servers.mongo.pid,
            "entries": str(entries_file),
        }
        for number in range(args.rounds):
            order = configs if number % 2 == 0 else configs[::-1]
            for index, (tree, log, handler_count) in enumerate(order):
                spec = {**base_spec, "root": str(root / f"{number}-{index}"), "log": log,
                        "handlers": HANDLER_MODULES[handler_count]}  # fmt: skip
                result = run_child(trees[tree], spec)
                runs[(tree, log, handler_count)].append(result)
                ms = result.per_thousand
                print(f"  round {number + 1} {tree:<8} {log:<5} {handler_count:>2} handlers  "
                      f"{result.events / result.wall:>7,.0f} events/s  batcher {ms(result.cpu):5.1f} "
                      f"(main {ms(result.main):5.1f})  redis {ms(result.redis):5.1f}  "
                      f"nx-27017 {ms(result.mongo):5.1f}  (web {ms(result.web):5.1f})", flush=True)  # fmt: skip
        medians = {c: summary(r) for c, r in runs.items()}
        print("\nmedians (CPU ms per 1,000 events; ceiling: events/s the batcher's CPU allows on one core)")
        print(f"  {'code':<8} {'log':<5} {'handlers':>8} {'events/s':>9} {'batcher':>8} {'main':>6} "
              f"{'redis':>6} {'nx-27017':>8} {'ceiling':>8} {'web':>6}")  # fmt: skip
        for (tree, log, handler_count), m in medians.items():
            print(f"  {tree:<8} {log:<5} {handler_count:>8} {m['events/s']:>9,.0f} {m['cpu']:>8.1f} {m['main']:>6.1f} "
                  f"{m['redis']:>6.1f} {m['mongo']:>8.1f} {1e6 / m['cpu']:>8,.0f} {m['web']:>6.1f}")  # fmt: skip
        for rev in args.base:
            print(f"\nthis / {rev} (events/s: higher is better; CPU: lower is better)")
            for log in logs:
                for handler_count in handlers:
                    new, old = medians[("this", log, handler_count)], medians[(rev, log, handler_count)]
                    print(f"  {log:<5} {handler_count:>2} handlers  events/s x{new['events/s'] / old['events/s']:.2f}  "
                          f"batcher CPU x{new['cpu'] / old['cpu']:.2f}  main thread x{new['main'] / old['main']:.2f}  "
                          f"redis x{new['redis'] / old['redis']:.2f}")  # fmt: skip
        if args.profile:
            for tree in trees:
                print(f"\nprofile of the {tree} code (mongo log, 4 handlers, main thread):", flush=True)
                spec = {**base_spec, "root": str(root / f"profile-{tree}"), "log": "mongo",
                        "handlers": HANDLER_MODULES[4], "profile": args.profile}  # fmt: skip
                run_child(trees[tree], spec)
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script by run_child: bench/ itself must not shadow the tree's packages
        sys.path[0] = os.environ.get("PYTHONPATH", str(HERE)).split(os.pathsep)[0]
    raise SystemExit(main())
