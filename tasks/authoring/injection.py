"""Injection by parameter name: which parameters the framework fills, which the caller does.

A function asks for ``mongodb``, ``fs``, ``cache``, ``query``, ``view`` or ``params`` by
naming a parameter so; every other parameter is an argument the caller supplies, and
together those arguments are the function's *category* (global, per user, per course...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from tasks.errors import ArgumentError, RegistrationError

INJECTED = frozenset({"mongodb", "fs", "cache", "query", "view", "params"})
EVENTS = "events"


@lru_cache(maxsize=4096)
def signature(func: Callable[..., Any]) -> inspect.Signature:
    """A function's signature, computed once (every call of a view or query binds against it)."""
    return inspect.signature(func)


def parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    """The named parameters of a function (no ``*args``/``**kwargs``)."""
    return [p for p in signature(func).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def injected_names(func: Callable[..., Any]) -> list[str]:
    """The parameters of ``func`` the framework fills in."""
    return [p.name for p in parameters(func) if p.name in INJECTED]


def caller_arguments(func: Callable[..., Any]) -> list[str]:
    """The parameters of ``func`` a caller supplies (its category), in order."""
    return [p.name for p in parameters(func) if p.name not in INJECTED]


def required_arguments(func: Callable[..., Any]) -> list[str]:
    """The caller-supplied parameters that have no default."""
    return [p.name for p in parameters(func) if p.name not in INJECTED and p.default is p.empty]


def check_signature(kind: str, func: Callable[..., Any]) -> None:
    """Refuse, at decoration time, a handler or property whose parameters cannot be filled."""
    others = caller_arguments(func)
    where = f"{func.__module__}.{func.__qualname__}"
    if kind == "handler" and others != [EVENTS]:
        raise RegistrationError(
            f"event handler {where} must take an 'events' parameter and otherwise only "
            f"injected ones ({', '.join(sorted(INJECTED))}); it takes {others}"
        )
    if kind == "property" and (len(others) != 1 or injected_names(func)):
        raise RegistrationError(f"event property {where} must take exactly one parameter, the event")


def bind_arguments(
    label: str, func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Match a caller's arguments to ``func``: returns (named arguments, leftover ``params``).

    Caller values for injected names are dropped: injected names always win. Leftovers go to
    ``params`` when the function takes it (or ``**kwargs``); otherwise they are an error.
    """
    names = caller_arguments(func)
    if len(args) > len(names):
        raise ArgumentError(f"{label} takes {len(names)} positional argument(s) {names}, got {len(args)}")
    bound = dict(zip(names, args, strict=False))
    leftovers: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in INJECTED:
            continue
        if key in bound:
            raise ArgumentError(f"{label} got argument {key!r} twice")
        if key in names:
            bound[key] = value
        else:
            leftovers[key] = value
    missing = [n for n in required_arguments(func) if n not in bound]
    if missing:
        raise ArgumentError(f"{label} is missing argument {missing[0]!r} (it takes {names})")
    accepts_extra = "params" in injected_names(func) or _has_var_keyword(func)
    if leftovers and not accepts_extra:
        unexpected = sorted(leftovers)[0]
        raise ArgumentError(f"{label} got an unexpected argument {unexpected!r} (it takes {names})")
    return bound, leftovers


def _has_var_keyword(func: Callable[..., Any]) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in signature(func).parameters.values())
