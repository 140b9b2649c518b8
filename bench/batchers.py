"""Batchers benchmark: ingest throughput with one batcher and with two (one active, one standing by).

``python -m bench.batchers [--events N] [--rounds R]``

The same deployment as ``bench.ingest`` (own Redis and nx-27017; gunicorn gthread, a prefork
worker ``-c 2``, four trivial handlers), fresh for each trial; trials alternate 1, 2, 1, 2, ...
so that load from elsewhere on the machine hits both alike. Prints events/s per trial and the
median per number of batchers, and the CPU seconds the batcher processes used.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import deploy
from bench.ingest import throughput, warm_up


def trial(servers: deploy.Servers, root: Path, batchers: int, events: int, clients: int) -> tuple[float, float]:
    """(events/s, CPU seconds of the batcher processes) of one run on fresh processes."""
    dep = deploy.Deployment(servers, "gthread", "prefork", root / f"trial-{batchers}", batchers=batchers).start()
    try:
        warm_up(dep, servers)
        result = throughput(dep, servers, events, clients)
    finally:
        dep.stop()
    cpu = sum(seconds for name, seconds in result.cpu.items() if name.startswith("batcher"))
    return result.rate, cpu


def main(argv: list[str] | None = None) -> int:
    """Entry point: alternate trials with one and two batchers, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.batchers", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per trial (default 20k)")
    parser.add_argument("--rounds", type=int, default=2, help="trials per number of batchers (default 2)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-batchers-"))
    rates: dict[int, list[float]] = {1: [], 2: []}
    with deploy.Servers(root) as servers:
        for _ in range(args.rounds):
            for batchers in (1, 2):
                rate, cpu = trial(servers, root, batchers, args.events, args.clients)
                rates[batchers].append(rate)
                print(f"  {batchers} batcher(s): {rate:>9,.0f} events/s  (batchers' CPU {cpu:.2f} s)", flush=True)
    for batchers, values in rates.items():
        print(f"{batchers} batcher(s): median {statistics.median(values):,.0f} events/s over {len(values)} trials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
