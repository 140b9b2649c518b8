"""The ``query`` and ``view`` objects: registered functions as attributes.

Inside a task, ``query.get_grades(course)`` runs the query's function in-process (with
its own module's injections): a task never waits on another task's result.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tasks.inject import caller_arguments
from tasks.registry import Registry, Spec


class Call(Protocol):
    def __call__(self, spec: Spec, args: Sequence[Any], kwargs: dict[str, Any]) -> Any: ...


class Caller:
    """Registered views or queries as methods: ``query.name(*args, **kwargs)``."""

    def __init__(self, kind: str, registry: Registry, call: Call) -> None:
        self._kind = kind
        self._registry = registry
        self._call = call

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        spec = self._registry.get(self._kind, name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(spec, args, kwargs)

        method.__name__ = name
        method.__doc__ = spec.doc
        method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in caller_arguments(spec.func)]
        )
        return method

    def __dir__(self) -> list[str]:
        return [n for n in self._registry.names(self._kind) if n.isidentifier()]

    def __repr__(self) -> str:
        return f"<{self._kind} caller: {', '.join(self._registry.names(self._kind))}>"
