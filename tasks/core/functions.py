"""What a caller knows of a view or query, where functions run, and methods that call them
with their real signatures: shared by the injected ``query``/``view`` objects and the client."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class _Unknown:
    """The default of a parameter whose default only the server knows: it is not sent."""

    def __repr__(self) -> str:
        return "<default>"


UNKNOWN_DEFAULT: Any = _Unknown()


@dataclass(frozen=True)
class FunctionInfo:
    """What a client knows of a view or query: its names, caller-supplied parameters and doc."""

    name: str
    kind: str
    parameters: tuple[str, ...]
    required: tuple[str, ...]
    doc: str = ""
    aliases: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # known defaults (local functions)

    @property
    def names(self) -> tuple[str, ...]:
        """The primary name and the aliases."""
        return (self.name, *self.aliases)

    def signature(self) -> inspect.Signature:
        """The caller's signature: required parameters first as declared, optional ones with
        their default (``<default>`` where only the server knows it)."""
        params = [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if name in self.required else self.defaults.get(name, UNKNOWN_DEFAULT),
            )
            for name in self.parameters
        ]
        return inspect.Signature(params)

    @classmethod
    def from_schema(cls, entry: Mapping[str, Any]) -> FunctionInfo:
        """A function's info from one entry of ``GET /schema``."""
        return cls(
            name=str(entry["name"]),
            kind=str(entry["class"]),
            parameters=tuple(entry.get("parameters", ())),
            required=tuple(entry.get("required", ())),
            doc=str(entry.get("doc") or ""),
            aliases=tuple(entry.get("aliases", ())),
            defaults={
                a["name"]: a["default"]
                for a in entry.get("arguments", ())
                if isinstance(a, Mapping) and "default" in a and isinstance(a.get("name"), str)
            },
        )


@runtime_checkable
class Backend(Protocol):
    """Where views and queries are found and run."""

    def functions(self, kind: str) -> dict[str, FunctionInfo]:
        """Every function of ``kind`` ("view" or "query") by name, aliases included."""
        ...

    def call(self, kind: str, name: str, kwargs: dict[str, Any]) -> Any:
        """Run function ``name`` of ``kind`` with keyword arguments; returns its result."""
        ...


def make_method(backend: Backend, info: FunctionInfo, name: str | None = None) -> Callable[..., Any]:
    """A function calling ``info``'s function on ``backend``, with its signature and doc.

    Positional arguments map to the parameters in order; keyword arguments the signature
    does not list are passed on (a function taking ``params`` accepts them; the backend
    refuses them otherwise). Optional parameters left out are not sent: the function's own
    default applies.
    """
    called = name or info.name
    signature = info.signature()
    label = f"{info.kind} {called!r}"

    def method(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(info.parameters):
            takes = f"{len(info.parameters)} positional argument(s) {list(info.parameters)}"
            raise TypeError(f"{label} takes {takes}, got {len(args)}")
        arguments = dict(zip(info.parameters, args, strict=False))
        for key, value in kwargs.items():
            if key in arguments:
                raise TypeError(f"{label} got argument {key!r} twice")
            arguments[key] = value
        sent = {k: v for k, v in arguments.items() if v is not UNKNOWN_DEFAULT}
        return backend.call(info.kind, called, sent)

    method.__name__ = called if called.isidentifier() else info.name
    method.__qualname__ = f"{info.kind}.{method.__name__}"
    method.__doc__ = info.doc
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method
