"""Dedupe claims: the per-id layout before time buckets against the current one, on one Redis each.

``python -m bench.dedupe [--events N] [--per-bucket P] [--rounds R] [--also FILE ...]``

Each design gets a fresh embedded Redis (no persistence) and, first, a steady state: a whole
window of records (``--per-bucket`` events claimed in each time bucket of the window, stepped
through with the deduper's ``clock``; the per-id layout gets as many keys). Then, in
``--rounds`` interleaved rounds (design after design, so that load from elsewhere on the
machine hits all alike), each design claims its share of ``--events`` **new** events, then
as many **duplicates** (ids from any bucket of the window, in random order), 500 per call
with four handlers, as the batcher does. Per design and kind it prints events/s (wall), the
CPU per event of Redis (``used_cpu_user + used_cpu_sys`` deltas) and of the client
(``time.process_time``), and Redis' ``used_memory`` per event retained; then the ratios
against the per-id layout measured in the same run.

``buckets (legacy reads)`` is the current layout within the first ``LEGACY_HORIZON`` after
an upgrade, while records of the per-id layout may still exist and are read on a miss;
``buckets`` is the steady state after it. ``--also FILE`` adds another version of
``tasks/pipeline/dedupe.py`` (e.g. ``git show REV:tasks/pipeline/dedupe.py > /tmp/x.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from bench import dedupe_perkey
from tasks.ops.embedded import EmbeddedRedis
from tasks.pipeline import dedupe
from tasks.storage.keys import Keys

WINDOW = 24 * 3600
CHUNK = 500
HANDLERS = ["bench.h.a", "bench.h.b", "bench.h.c", "bench.h.d"]


class Clock:
    """A settable clock for the bucketed layout (seconds), starting a window ago."""

    def __init__(self) -> None:
        self.now = time.time() - WINDOW

    def __call__(self) -> float:
        return self.now


def prints_of(ids: Sequence[str]) -> list[str]:
    """An event fingerprint (16 hex digits) per id."""
    return [hashlib.blake2b(i.encode(), digest_size=8).hexdigest() for i in ids]


@dataclass
class Tally:
    """What one kind of claim cost one design, summed over rounds."""

    events: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    redis_cpu: float = 0.0

    def line(self) -> str:
        """events/s, Redis and client CPU µs per event."""
        return (
            f"{self.events / self.wall:>9,.0f} events/s  Redis {self.redis_cpu / self.events * 1e6:5.2f} µs/event"
            f"  client {self.client_cpu / self.events * 1e6:5.2f} µs/event"
        )


@dataclass
class Design:
    """One dedupe implementation on its own Redis."""

    label: str
    server: EmbeddedRedis
    client: redis.Redis
    claim: Callable[[Sequence[str], Sequence[str], Sequence[str]], Any]
    clock: Clock | None
    span: int
    buckets: int = dedupe.BUCKETS  # buckets per window (the per-id layout: filled as many times)
    prepare: Callable[[], None] = lambda: None
    seen: list[str] = field(default_factory=list)
    tallies: dict[str, Tally] = field(default_factory=dict)
    bytes_per_event: float = 0.0

    def redis_cpu(self) -> float:
        """Redis' CPU seconds so far (user + system)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def run(self, kind: str, ids: list[str]) -> None:
        """Claim ``ids`` 500 at a time, adding the cost to the tally of ``kind``."""
        prints = prints_of(ids)
        tally = self.tallies.setdefault(kind, Tally())
        redis_before, cpu_before, wall_before = self.redis_cpu(), time.process_time(), time.perf_counter()
        for start in range(0, len(ids), CHUNK):
            self.claim(ids[start : start + CHUNK], prints[start : start + CHUNK], HANDLERS)
        tally.wall += time.perf_counter() - wall_before
        tally.client_cpu += time.process_time() - cpu_before
        tally.redis_cpu += self.redis_cpu() - redis_before
        tally.events += len(ids)


def load(path: Path) -> ModuleType:
    """A dedupe module from a file (another version of tasks/pipeline/dedupe.py)."""
    spec = importlib.util.spec_from_file_location(f"bench_dedupe_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start(root: Path, label: str) -> tuple[EmbeddedRedis, redis.Redis]:
    """A fresh Redis of a design's own."""
    server = EmbeddedRedis(root / label.replace(" ", "-").replace("(", "").replace(")", ""), persist=False).start()
    return server, redis.Redis.from_url(server.url)


def designs(root: Path, also: list[Path]) -> list[Design]:
    """The per-id layout, the current one after and within the legacy horizon, and any ``--also``."""
    keys = Keys()
    out: list[Design] = []
    server, client = start(root, "perkey")
    old = dedupe_perkey.Deduper(client, WINDOW, keys)
    out.append(Design("per-id keys", server, client, old.claim, None, WINDOW))
    modules: list[tuple[str, ModuleType]] = [("buckets", dedupe)]
    modules += [(f"buckets ({path.name})", load(path)) for path in also]
    for label, module in modules:
        server, client = start(root, label)
        clock = Clock()
        deduper = module.Deduper(client, WINDOW, keys, clock=clock)
        span = module.bucket_seconds(WINDOW)
        out.append(Design(label, server, client, deduper.claim, clock, span, module.BUCKETS))
    if hasattr(dedupe, "LEGACY_HORIZON"):
        server, client = start(root, "legacy")
        clock = Clock()
        deduper = dedupe.Deduper(client, WINDOW, keys, clock=clock)
        span = dedupe.bucket_seconds(WINDOW)
        out.append(Design("buckets (legacy reads)", server, client, deduper.claim, clock, span))
    return out


def fill(design: Design, per_bucket: int, rng: random.Random) -> None:
    """A window's worth of records: ``per_bucket`` new events in each of the design's buckets of a window."""
    for _ in range(design.buckets):
        ids = [f"~@lms:{rng.getrandbits(128):032x}" for _ in range(per_bucket)]
        design.run("fill", ids)
        design.seen += ids
        if design.clock is not None:
            design.clock.now += design.span
    if design.label == "buckets" and hasattr(dedupe, "LEGACY_HORIZON"):
        # the steady state long after an upgrade: the per-id records are gone
        design.client.set(Keys().dedupe_legacy_until, "0")


def main(argv: list[str] | None = None) -> int:
    """Entry point: fill each design's Redis, claim new events and duplicates in interleaved rounds, print."""
    parser = argparse.ArgumentParser(prog="python -m bench.dedupe", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=60_000, help="new events (and as many duplicates) per design")
    parser.add_argument("--per-bucket", type=int, default=25_000, help="events per time bucket of the steady state")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--also", type=Path, action="append", default=[], help="another dedupe.py to measure")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-dedupe-"))
    rng = random.Random(args.seed)
    all_designs = designs(root, args.also)
    try:
        print(f"steady state: {args.per_bucket:,} events in each bucket of a {WINDOW} s window, then the current one")
        for design in all_designs:
            fill(design, args.per_bucket, rng)
            print(f"  {design.label:<26} filled: {design.tallies.pop('fill').line()}", flush=True)
        share = args.events // args.rounds // CHUNK * CHUNK
        for r in range(args.rounds):
            fresh = [f"~@lms:{rng.getrandbits(128):032x}" for _ in range(share)]
            for design in all_designs:
                before = design.client.info("memory")["used_memory"]
                design.run("new", fresh)
                design.bytes_per_event += (design.client.info("memory")["used_memory"] - before) / share / args.rounds
                design.seen += fresh
            for design in all_designs:
                design.run("duplicate", rng.sample(design.seen, share))
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
        base = all_designs[0]
        for kind in ("new", "duplicate"):
            print(f"\n{kind} events ({args.rounds} rounds of {share:,}):")
            for design in all_designs:
                t, b = design.tallies[kind], base.tallies[kind]
                ratio = (t.events / t.wall) / (b.events / b.wall)
                cpu = (t.redis_cpu + t.client_cpu) / (b.redis_cpu + b.client_cpu)
                print(f"  {design.label:<26} {t.line()}   x{ratio:4.2f} events/s, x{cpu:4.2f} CPU of per-id keys")
        print("\nRedis used_memory per new event:")
        for design in all_designs:
            print(f"  {design.label:<26} {design.bytes_per_event:6.1f} B")
    finally:
        for design in all_designs:
            design.client.close()
            design.server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
