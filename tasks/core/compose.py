"""Composition: queries and views chained (and grouped) as Celery canvases.

Each step's result is passed to the next step's ``into`` parameter (by default its first
parameter the step does not set itself), worker to worker: the web process only waits
for the last result. A group runs its steps in parallel and passes the list of their
results on. Steps are checked before anything is sent, and a failure names its step.

    app.compose([Step("query", "get_grades", {"course": "c1"}), Step("view", "plot_grades", into="grades")])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from celery import Celery, chain, group
from celery.canvas import Signature
from celery.result import AsyncResult

from config.settings import Settings
from tasks.authoring.injection import bind_arguments, caller_arguments
from tasks.core.checks import check_arguments
from tasks.core.registry import Registry
from tasks.errors import ArgumentError, UnknownName

INTO_ARGUMENT = "_into"


@dataclass(frozen=True)
class Step:
    """One query or view call in a composition; ``into`` receives the previous step's result."""

    kind: str
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    into: str | None = None

    @property
    def label(self) -> str:
        """How errors name the step."""
        return f"{self.kind} {self.name!r}"


Stage = Union[Step, "list[Step]"]  # a list of steps is a group


def parse_steps(raw: Any) -> list[Stage]:
    """Steps from JSON: ``[{"query": name, "args": {...}}, {"view": name, "into": "x"}, {"group": [...]}]``."""
    if not isinstance(raw, list) or not raw:
        raise ArgumentError("'steps' must be a non-empty list of steps")
    return [_parse_stage(item, f"step {n + 1}") for n, item in enumerate(raw)]


def _parse_stage(item: Any, where: str) -> Stage:
    if isinstance(item, Mapping) and "group" in item:
        members = item["group"]
        if not isinstance(members, list) or not members:
            raise ArgumentError(f"{where}: 'group' must be a non-empty list of steps")
        return [_parse_step(m, f"{where}, member {k + 1}") for k, m in enumerate(members)]
    return _parse_step(item, where)


def _parse_step(item: Any, where: str) -> Step:
    kinds = [kind for kind in ("query", "view") if isinstance(item, Mapping) and kind in item]
    if len(kinds) != 1:
        raise ArgumentError(
            f'{where}: a step is {{"query": name}} or {{"view": name}}, with optional "args" and "into"'
        )
    args, into = item.get("args", {}), item.get("into")
    if not isinstance(args, Mapping) or not (into is None or isinstance(into, str)):
        raise ArgumentError(f"{where}: 'args' must be an object and 'into' a parameter name")
    return Step(kinds[0], str(item[kinds[0]]), dict(args), into)


def compose(celery: Celery, registry: Registry, limits: Settings, stages: Sequence[Stage]) -> Signature:
    """A Celery canvas running ``stages`` (functions of ``registry``) in order; ``ArgumentError``
    names a step that cannot run.

    At most ``limits.max_chain_steps`` stages, each group at most ``limits.max_group_width`` steps wide.
    """
    if len(stages) > limits.max_chain_steps:
        raise ArgumentError(
            f"a chain has at most {limits.max_chain_steps} steps (INSIGHTS_MAX_CHAIN_STEPS), got {len(stages)}"
        )
    for position, stage in enumerate(stages):
        if isinstance(stage, list) and len(stage) > limits.max_group_width:
            raise ArgumentError(
                f"step {position + 1}: a group has at most {limits.max_group_width} steps "
                f"(INSIGHTS_MAX_GROUP_WIDTH), got {len(stage)}"
            )
    signatures = []
    for position, stage in enumerate(stages):
        fed = position > 0
        members = stage if isinstance(stage, list) else [stage]
        built = [_signature(celery, registry, step, fed, f"step {position + 1}") for step in members]
        signatures.append(group(built) if isinstance(stage, list) else built[0])
    return chain(*signatures) if len(signatures) > 1 else signatures[0]


def _signature(celery: Celery, registry: Registry, step: Step, fed: bool, where: str) -> Signature:
    try:
        spec = registry.get(step.kind, step.name)
    except UnknownName as exc:
        raise ArgumentError(f"{where}: {exc}") from None
    args = dict(step.args)
    try:
        args = check_arguments(spec.func, args)
    except ArgumentError as exc:
        raise ArgumentError(f"{where} ({step.label}): {exc}") from None
    if fed:
        into = step.into or next((p for p in caller_arguments(spec.func) if p not in args), None)
        if into is None:
            raise ArgumentError(f"{where} ({step.label}) has no parameter left to receive the previous result")
        if into in args:  # the fed value would replace a value given (or locked) for this step
            raise ArgumentError(f"{where} ({step.label}): 'into' names {into!r}, which the step already sets")
        args[INTO_ARGUMENT] = into
    checked = {k: v for k, v in args.items() if k != INTO_ARGUMENT}
    if fed:
        checked[args[INTO_ARGUMENT]] = None  # stands for the previous result
    try:
        bind_arguments(spec.label, spec.func, (), checked)
    except ArgumentError as exc:
        raise ArgumentError(f"{where}: {exc}") from None
    return celery.signature(spec.task_name, kwargs=args)


def failed_step(result: AsyncResult, stages: Sequence[Stage]) -> str:
    """Which step of a finished chain failed, e.g. ``step 2 (view 'plot_grades')``."""
    results = []
    node: AsyncResult | None = result
    while node is not None:
        results.append(node)
        node = node.parent
    results.reverse()  # first step first
    for position, node in enumerate(results[: len(stages)]):
        if node.failed():
            stage = stages[position]
            label = stage.label if isinstance(stage, Step) else "group of " + ", ".join(s.label for s in stage)
            return f"step {position + 1} ({label})"
    return "a step"
