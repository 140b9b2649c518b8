"""The authoring API: ``@view``, ``@query``, ``@event_handler``, ``@event_property``.

A decorator validates its options, records a :class:`Declaration` on the function (and in
a list kept in the function's Python module) and returns the function unchanged, so it stays
a plain callable. Module discovery later finds the declarations and adds them to the
application's registry — also those of a function whose name a later definition rebound.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar, overload

from tasks.authoring.events import Event
from tasks.authoring.injection import caller_arguments, check_signature, parameters
from tasks.errors import RegistrationError

F = TypeVar("F", bound=Callable[..., Any])

DECLARATIONS_ATTR = "__insights_declarations__"
DECLARED_ATTR = "__insights_declared__"  # on a Python module: every (function, declaration) made in it
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")

# The original edX Insights' options are here too: category, description, args on views and
# queries; batch, single_process, source_queue on handlers; description on properties.
OPTIONS = {
    "view": {"name", "queue", "fallback", "category", "description", "args"},
    "query": {"name", "queue", "fallback", "category", "description", "args"},
    "handler": {"queue", "source_queue", "per_user", "per_resource", "single_process", "batch", "attempts", "backoff"},
    "property": {"name", "fallback", "description"},
}
ORDERINGS = ("per_user", "per_resource", "single_process")


@dataclass(frozen=True)
class Declaration:
    """What one decorator said about a function: its kind, names and options."""

    kind: str
    names: tuple[str, ...]
    queue: str | None = None
    fallback: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def declarations_of(func: Callable[..., Any]) -> list[Declaration]:
    """The declarations recorded on a function by Insights decorators (maybe none)."""
    return list(getattr(func, DECLARATIONS_ATTR, ()))


def declare(func: Callable[..., Any], declaration: Declaration) -> None:
    """Record ``declaration`` on ``func`` and in the declaration list of its Python module.

    The list is what lets discovery register a function whose name is later rebound (the
    original's test module defines ``djt_fake_user_count`` as a query, then as a view).
    """
    setattr(func, DECLARATIONS_ATTR, (*getattr(func, DECLARATIONS_ATTR, ()), declaration))
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    if module is not None:
        vars(module).setdefault(DECLARED_ATTR, []).append((func, declaration))


def declared_in(python_module: ModuleType) -> list[tuple[Callable[..., Any], Declaration]]:
    """Every (function, declaration) that decorators made in ``python_module``, in order."""
    return list(vars(python_module).get(DECLARED_ATTR, ()))


def _decorator(kind: str, func: Callable[..., Any] | None, options: dict[str, Any]) -> Any:
    unknown = set(options) - OPTIONS[kind]
    if unknown:
        bad = sorted(unknown)[0]
        hint = difflib.get_close_matches(bad, OPTIONS[kind], n=1)
        raise RegistrationError(
            f"@{_public(kind)} got an unknown option {bad!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; it takes {sorted(OPTIONS[kind])}")
        )
    if "queue" in options and "source_queue" in options:
        raise RegistrationError("@event_handler: source_queue is the original's name for queue; give one of them")
    queue_option = "source_queue" if "source_queue" in options else "queue"
    queue = options.get(queue_option)
    if queue is not None and not (isinstance(queue, str) and QUEUE_PATTERN.match(queue)):
        raise RegistrationError(f"@{_public(kind)}: {queue_option} must be a name like 'views', got {queue!r}")
    fallback = options.get("fallback", False)
    if not isinstance(fallback, bool):
        raise RegistrationError(f"@{_public(kind)}: fallback must be True or False, got {fallback!r}")

    extra = _handler_options(options, queue) if kind == "handler" else _described(kind, options)

    def record(f: F) -> F:
        if not callable(f):
            raise RegistrationError(f"@{_public(kind)} decorates functions, got {f!r}")
        names = _names(kind, options.get("name"), f)
        check_signature(kind, f, single_event=extra.get("batch") is False)
        if "args" in options:
            _check_args(kind, options["args"], f)
        declare(f, Declaration(kind, names, queue, fallback, extra))
        return f

    return record(func) if func is not None else record


def _handler_options(options: dict[str, Any], queue: str | None) -> dict[str, Any]:
    kept = (*ORDERINGS, "batch", "attempts", "backoff")
    extra: dict[str, Any] = {k: options[k] for k in kept if k in options}
    for flag in (*ORDERINGS, "batch"):
        if not isinstance(extra.get(flag, False), bool):
            raise RegistrationError(f"@event_handler: {flag} must be True or False, got {extra[flag]!r}")
    ordered = [flag for flag in ORDERINGS if extra.get(flag)]
    if len(ordered) > 1:
        raise RegistrationError(f"@event_handler: choose one of {', '.join(ORDERINGS)}; got {' and '.join(ordered)}")
    if ordered and queue:
        raise RegistrationError(f"@event_handler: a {ordered[0]} handler runs on shard queues; drop queue=")
    attempts = extra.get("attempts", 1)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise RegistrationError(f"@event_handler: attempts must be a whole number >= 1, got {attempts!r}")
    backoff = extra.get("backoff", 0)
    if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or backoff < 0:
        raise RegistrationError(f"@event_handler: backoff must be seconds >= 0, got {backoff!r}")
    return extra


def _described(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The original's ``description`` (and, on views and queries, ``category``): non-empty text."""
    extra: dict[str, Any] = {k: options[k] for k in ("category", "description") if k in options}
    for key, value in extra.items():
        if not (isinstance(value, str) and value.strip()):
            raise RegistrationError(f"@{_public(kind)}: {key} must be non-empty text, got {value!r}")
    return extra


def _check_args(kind: str, args: Any, func: Callable[..., Any]) -> None:
    """The original's ``args`` (an argspec it never used): accepted only if it names the function's parameters."""
    if not (isinstance(args, (list, tuple)) and all(isinstance(a, str) for a in args)):
        raise RegistrationError(f"@{_public(kind)}: args must be a list of parameter names, got {args!r}")
    every = [p.name for p in parameters(func)]
    if set(args) not in (set(every), set(caller_arguments(func))):
        raise RegistrationError(
            f"@{_public(kind)}: args={list(args)} does not match the parameters of "
            f"{func.__module__}.{func.__qualname__} {every}; the signature is what counts: drop args"
        )


def _names(kind: str, name: Any, func: Callable[..., Any]) -> tuple[str, ...]:
    if name is None:
        names: tuple[Any, ...] = (func.__name__,)
    elif isinstance(name, str):
        names = (name,)
    elif isinstance(name, (list, tuple)) and name:
        names = tuple(name)
    else:
        raise RegistrationError(f"@{_public(kind)}: name must be a string or a non-empty list of strings")
    for n in names:
        if not isinstance(n, str) or not NAME_PATTERN.match(n):
            raise RegistrationError(
                f"@{_public(kind)}: {n!r} is not a valid name (letters, digits, '_', '.', '-'; "
                "not starting with a digit)"
            )
    if kind == "property":
        shadowed = [n for n in names if n.startswith("_") or hasattr(Event, n)]
        if shadowed:
            raise RegistrationError(
                f"@event_property: {shadowed[0]!r} is taken by the event itself (a Mapping method, "
                "'event', or a private name); choose another name"
            )
    if len(set(names)) != len(names):
        raise RegistrationError(f"@{_public(kind)}: name list {list(names)} repeats a name")
    return names


def _public(kind: str) -> str:
    return {"handler": "event_handler", "property": "event_property"}.get(kind, kind)


@overload
def view(func: F, /) -> F: ...
@overload
def view(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def view(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a view: returns HTML for the dashboard.

    Options: name, queue, fallback; and the original's ``description`` (replaces the
    docstring), ``category`` (the label /schema shows instead of the one derived from the
    parameters) and ``args`` (checked against the signature, otherwise unused).
    """
    return _decorator("view", func, options)


@overload
def query(func: F, /) -> F: ...
@overload
def query(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def query(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a query: returns data.

    Options: name (a string or a list of aliases), queue, fallback; and the original's
    ``description``, ``category`` and ``args``, as on ``view``.
    """
    return _decorator("query", func, options)


@overload
def event_handler(func: F, /) -> F: ...
@overload
def event_handler(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def event_handler(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare an event handler: receives every batch of events as ``events`` (a list).

    Options: ``queue`` (or the original's name, ``source_queue``); ``per_user=True`` /
    ``per_resource=True`` (events of one user / resource reach the handler in order, on
    shard queues); ``single_process=True`` (every event on one shard queue: one process, in
    order); ``batch=False`` (called once per event, with ``events`` a list of that one event
    as in the original, or ``event`` the event itself, retried and dead-lettered per event);
    ``attempts`` (tries before the failing events are isolated and dead-lettered) and
    ``backoff`` (seconds before the first retry, doubling).
    """
    return _decorator("handler", func, options)


@overload
def event_property(func: F, /) -> F: ...
@overload
def event_property(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def event_property(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a derived event attribute (``evt.<name>``) computed from one event.

    Options: name, fallback, and the original's ``description`` (replaces the docstring).
    """
    return _decorator("property", func, options)
