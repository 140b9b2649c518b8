"""Batch recomputation: refresh a memoized query over a parameter space, as Celery groups.

The parameter sets are sent in groups of ``concurrency`` tasks (so at most that many run
at once), each with ``_memo=refresh``; failures are collected, not fatal.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import group
from tqdm import tqdm

from tasks.authoring.injection import bind_arguments
from tasks.core.memo import MODE_ARGUMENT, memo_policy
from tasks.errors import ArgumentError

if TYPE_CHECKING:
    from tasks.app import Insights

TASK_TIMEOUT = 3600.0


@dataclass
class RecomputeReport:
    """What a recomputation did: how many parameter sets succeeded, and which failed why."""

    query: str
    total: int = 0
    succeeded: int = 0
    failures: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    def summary(self, limit: int = 10) -> str:
        """A few lines for people: counts, then the first failures."""
        lines = [f"{self.query}: {self.succeeded}/{self.total} recomputed, {len(self.failures)} failed"]
        lines += [f"  failed {params}: {error}" for params, error in self.failures[:limit]]
        if len(self.failures) > limit:
            lines.append(f"  … and {len(self.failures) - limit} more")
        return "\n".join(lines)


def parameter_space(values: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of the given values per parameter (a Cartesian product)."""
    names = list(values)
    for combination in itertools.product(*(values[name] for name in names)):
        yield dict(zip(names, combination, strict=True))


def recompute(
    app: Insights,
    query: str,
    parameter_sets: Iterable[Mapping[str, Any]],
    concurrency: int = 8,
    progress: bool = True,
    total: int | None = None,
) -> RecomputeReport:
    """Refresh the cached results of memoized ``query`` for each parameter set; returns a report."""
    spec = app.registry.get("query", query)
    if memo_policy(spec.func) is None:
        raise ArgumentError(f"{spec.label} is not memoized; only memoized queries can be recomputed")
    if concurrency < 1:
        raise ArgumentError("concurrency must be at least 1")
    report = RecomputeReport(spec.name)
    task = app.celery.tasks[spec.task_name]
    sets = iter(parameter_sets)
    with tqdm(total=total, unit="set", desc=spec.name, disable=not progress, file=sys.stderr) as bar:
        while chunk := [dict(p) for p in itertools.islice(sets, concurrency)]:
            for params in chunk:
                bind_arguments(spec.label, spec.func, (), params)  # refuse a bad set before sending
            result = group(task.s(**params, **{MODE_ARGUMENT: "refresh"}) for params in chunk).apply_async()
            try:
                result.join(timeout=TASK_TIMEOUT, propagate=False)
                for params, child in zip(chunk, result.results, strict=True):
                    if child.successful():
                        report.succeeded += 1
                    else:
                        report.failures.append((params, f"{type(child.result).__name__}: {child.result}"))
            finally:
                result.forget()
            report.total += len(chunk)
            bar.update(len(chunk))
    return report
