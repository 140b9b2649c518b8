"""The steps a call of a view or query goes through, each wrapping the next, in the spirit of
Dramatiq's middleware: feeding a chain's previous result in, presenting a view's result,
memoizing a query. The app runs calls through a list of steps (``Insights.task_steps`` for
tasks, ``Insights.call_steps`` for in-process calls), so a new concern is a new step, not
an edit of the app. Handler tasks have steps of their own (``Insights.handler_steps``,
tasks/pipeline/handling.py: remembering a finished task's outcome), run by the same ``through``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tasks.core.checks import check_arguments
from tasks.core.compose import INTO_ARGUMENT
from tasks.core.memo import Memo, memo_policy, split_mode
from tasks.core.presentation import present_view_result
from tasks.core.registry import Spec
from tasks.storage.fs import FileStore


@dataclass(frozen=True)
class Call:
    """One call of a registered function, with the caller's arguments."""

    spec: Spec
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Next = Callable[[Call], Any]
Step = Callable[[Call, Next], Any]


C = TypeVar("C")
R = TypeVar("R")


def through(steps: Sequence[Callable[[C, Callable[[C], R]], R]], last: Callable[[C], R]) -> Callable[[C], R]:
    """A function running a call through ``steps`` in order (each gets the call and the rest), then ``last``."""
    run = last
    for step in reversed(steps):
        run = _wrap(step, run)
    return run


def _wrap(step: Callable[[C, Callable[[C], R]], R], inner: Callable[[C], R]) -> Callable[[C], R]:
    return lambda call: step(call, inner)


def feed(call: Call, next: Next) -> Any:
    """In a composition: the previous step's result (first positional argument) goes to the
    ``_into`` parameter, after the checks every outside value passes (it may hold what a caller planted)."""
    kwargs = dict(call.kwargs)
    into = kwargs.pop(INTO_ARGUMENT, None)
    if into is None or not call.args:
        return next(replace(call, kwargs=kwargs))
    fed = check_arguments(call.spec.func, {into: call.args[0]})[into]
    return next(replace(call, args=call.args[1:], kwargs={**kwargs, into: fed}))


def present(file_store: Callable[[str], FileStore]) -> Step:
    """A view's figure or image is stored in its module's ``fs`` and shown as an ``<img>``."""

    def step(call: Call, next: Next) -> Any:
        result = next(call)
        if call.spec.kind != "view":
            return result
        return present_view_result(result, call.spec.name, file_store(call.spec.module))

    return step


def memoize(memo: Callable[[], Memo]) -> Step:
    """A memoized query's result comes from the cache (``memo()``), computed once while others wait
    (``_memo`` modes)."""

    def step(call: Call, next: Next) -> Any:
        policy = memo_policy(call.spec.func)
        if policy is None:
            return next(call)
        mode, kwargs = split_mode(call.kwargs)
        store = memo()
        key = store.key_of(call.spec, call.args, kwargs, policy)
        return store.get_or_compute(key, policy, lambda: next(replace(call, kwargs=kwargs)), mode)

    return step
