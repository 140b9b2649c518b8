"""Ordered handlers: which shard an event belongs to, by user or by resource.

Events of one user (or resource) always map to the same shard queue; each shard queue has
one single-process consumer, so a ``per_user`` handler sees one user's events in order
while different shards run in parallel. Who and what an event is about is the data layer's
definition when one is loaded (the event properties ``agent`` and ``object``, which read
Open edX and xAPI alike), else the first of the fields below the event names.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from tasks.authoring.events import Event, Property

# Paths into a raw event, tried in order; Open edX tracking logs first, then xAPI.
USER_PATHS = (
    ("username",),
    ("user",),
    ("user_id",),
    ("context", "user_id"),
    ("actor", "account", "name"),
    ("actor", "mbox"),
)
RESOURCE_PATHS = (
    ("resource",),
    ("resource_id",),
    ("object", "id"),
    ("event", "id"),
    ("event", "problem_id"),
    ("page",),
    ("context", "path"),
)
PATHS = {"user": USER_PATHS, "resource": RESOURCE_PATHS}
PROPERTY = {"user": "agent", "resource": "object"}  # the data layer's vocabulary (modules/datalayer)


def shard_key(event: Mapping[str, Any], by: str, properties: Mapping[str, Property] | None = None) -> str:
    """The user or resource an event is about ("" when it names none: such events share shard 0):
    the registered ``agent``/``object`` property's answer, else the first field it names."""
    prop = (properties or {}).get(PROPERTY[by])
    if prop is not None:
        try:
            value = prop(Event(event, properties))
        except Exception:  # a property must not stop dispatch: fall back to the fields
            value = None
        if value not in (None, ""):
            return str(value)
    for path in PATHS[by]:
        value = _at(event, path)
        if value not in (None, ""):
            return str(value)
    return ""


def named(event: Mapping[str, Any], by: str) -> list[str]:
    """Every user (or resource) an event names, as text, in the order of the paths tried:
    ``shard_key`` is the first. Modules read different fields (``user``, ``username``, ...),
    so an event is about one user only if every one it names is that user."""
    values = (_at(event, path) for path in PATHS[by])
    return [str(value) for value in values if value not in (None, "")]


def _at(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def shard_of(event: Mapping[str, Any], by: str, shards: int, properties: Mapping[str, Property] | None = None) -> int:
    """The shard (0 .. shards-1) of an event for a per-user or per-resource handler."""
    key = shard_key(event, by, properties)
    return zlib.crc32(key.encode()) % shards if key else 0
