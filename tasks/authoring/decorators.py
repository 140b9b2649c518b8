"""The authoring API: ``@view``, ``@query``, ``@event_handler``, ``@event_property``.

A decorator validates its options, records a :class:`Declaration` on the function and
returns the function unchanged, so it stays a plain callable. Module discovery later
finds the declarations and adds them to the application's registry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from tasks.authoring.events import Event
from tasks.authoring.injection import check_signature
from tasks.errors import RegistrationError

F = TypeVar("F", bound=Callable[..., Any])

DECLARATIONS_ATTR = "__insights_declarations__"
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")

OPTIONS = {
    "view": {"name", "queue", "fallback"},
    "query": {"name", "queue", "fallback"},
    "handler": {"queue", "per_user", "per_resource", "attempts", "backoff"},
    "property": {"name", "fallback"},
}


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


def _decorator(kind: str, func: Callable[..., Any] | None, options: dict[str, Any]) -> Any:
    unknown = set(options) - OPTIONS[kind]
    if unknown:
        bad = sorted(unknown)[0]
        hint = difflib.get_close_matches(bad, OPTIONS[kind], n=1)
        raise RegistrationError(
            f"@{_public(kind)} got an unknown option {bad!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; it takes {sorted(OPTIONS[kind])}")
        )
    queue = options.get("queue")
    if queue is not None and not (isinstance(queue, str) and QUEUE_PATTERN.match(queue)):
        raise RegistrationError(f"@{_public(kind)}: queue must be a name like 'views', got {queue!r}")
    fallback = options.get("fallback", False)
    if not isinstance(fallback, bool):
        raise RegistrationError(f"@{_public(kind)}: fallback must be True or False, got {fallback!r}")

    extra = _handler_options(options) if kind == "handler" else {}

    def record(f: F) -> F:
        if not callable(f):
            raise RegistrationError(f"@{_public(kind)} decorates functions, got {f!r}")
        names = _names(kind, options.get("name"), f)
        check_signature(kind, f)
        declaration = Declaration(kind, names, queue, fallback, extra)
        existing = getattr(f, DECLARATIONS_ATTR, ())
        setattr(f, DECLARATIONS_ATTR, (*existing, declaration))
        return f

    return record(func) if func is not None else record


def _handler_options(options: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {k: options[k] for k in ("per_user", "per_resource", "attempts", "backoff") if k in options}
    for flag in ("per_user", "per_resource"):
        if not isinstance(extra.get(flag, False), bool):
            raise RegistrationError(f"@event_handler: {flag} must be True or False, got {extra[flag]!r}")
    sharded = extra.get("per_user", False) or extra.get("per_resource", False)
    if extra.get("per_user") and extra.get("per_resource"):
        raise RegistrationError("@event_handler: choose per_user or per_resource, not both")
    if sharded and options.get("queue"):
        raise RegistrationError("@event_handler: a per-user/per-resource handler runs on shard queues; drop queue=")
    attempts = extra.get("attempts", 1)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise RegistrationError(f"@event_handler: attempts must be a whole number >= 1, got {attempts!r}")
    backoff = extra.get("backoff", 0)
    if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or backoff < 0:
        raise RegistrationError(f"@event_handler: backoff must be seconds >= 0, got {backoff!r}")
    return extra


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
    """Declare a view: returns HTML for the dashboard. Options: name, queue, fallback."""
    return _decorator("view", func, options)


@overload
def query(func: F, /) -> F: ...
@overload
def query(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def query(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a query: returns data. Options: name (a string or a list of aliases), queue, fallback."""
    return _decorator("query", func, options)


@overload
def event_handler(func: F, /) -> F: ...
@overload
def event_handler(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def event_handler(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare an event handler: receives every batch of events as ``events`` (a list).

    Options: ``queue``; ``per_user=True`` / ``per_resource=True`` (events of one user /
    resource reach the handler in order, on shard queues); ``attempts`` (tries before the
    failing events are isolated and dead-lettered) and ``backoff`` (seconds before the
    first retry, doubling).
    """
    return _decorator("handler", func, options)


@overload
def event_property(func: F, /) -> F: ...
@overload
def event_property(func: None = None, /, **options: Any) -> Callable[[F], F]: ...
def event_property(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a derived event attribute (``evt.<name>``) computed from one event. Options: name, fallback."""
    return _decorator("property", func, options)
