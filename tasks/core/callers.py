"""The ``query`` and ``view`` objects: registered functions as attributes.

Inside a task, ``query.get_grades(course)`` runs the query's function in-process (with
its own module's injections): a task never waits on another task's result.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tasks.authoring.injection import caller_arguments
from tasks.core.functions import Backend, make_method
from tasks.core.registry import Registry, Spec
from tasks.errors import UnknownName


class Call(Protocol):
    def __call__(self, spec: Spec, args: Sequence[Any], kwargs: dict[str, Any]) -> Any: ...


class Caller:
    """Registered views or queries as methods: ``query.name(*args, **kwargs)``."""

    def __init__(
        self, kind: str, registry: Registry, call: Call, remotes: Callable[[], Sequence[Backend]] = tuple
    ) -> None:
        self._kind = kind
        self._registry = registry
        self._call = call
        self._remotes = remotes  # backends asked for names the registry does not know

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        try:
            spec = self._registry.get(self._kind, name)
        except UnknownName:
            # the first remote backend that has the name

            for backend in self._remotes():
                info = backend.functions(self._kind).get(name)
                if info is not None:
                    return make_method(backend, info, name)
            raise

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(spec, args, kwargs)

        method.__name__ = name
        method.__doc__ = spec.doc
        method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in caller_arguments(spec.func)]
        )
        return method

    def __dir__(self) -> list[str]:
        remote = {n for b in self._remotes() for n in b.functions(self._kind)}
        return sorted(n for n in {*self._registry.names(self._kind), *remote} if n.isidentifier())

    def __repr__(self) -> str:
        return f"<{self._kind} caller: {', '.join(self._registry.names(self._kind))}>"
