"""How fast ``tasks.synthetic`` generates events: ``python -m bench.generate [--students N] [--rounds R]``.

Simulates a week of one course (the default ``Config`` with ``--students`` learners) ``--rounds``
times in this process and prints the best rate against the target: more than 10,000 events/s
(60k-150k/s on a quiet machine), so that generating the demo's or a test's course never
dominates its run. The exit status is 1 on a miss.
"""

from __future__ import annotations

import argparse
import time

from tasks.synthetic import Config, simulate

TARGET = 10_000  # events per second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100, help="learners in the course (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="runs; the best one counts (default 3)")
    args = parser.parse_args(argv)
    rates, count = [], 0
    for _ in range(args.rounds):
        started = time.perf_counter()
        count = sum(1 for _ in simulate(Config(students=args.students)))
        rates.append(count / (time.perf_counter() - started))
    best = max(rates)
    verdict = "PASS" if best > TARGET else "MISS"
    print(f"{count:,} events per run; {', '.join(f'{r:,.0f}' for r in rates)} events/s")
    print(f"best {best:,.0f} events/s; target > {TARGET:,} events/s: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
