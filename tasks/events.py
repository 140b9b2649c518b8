"""Events: read-only mappings with derived properties, and parsing of what the LMS sends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tasks.errors import InvalidEvent

Property = Callable[["Event"], Any]


class Event(Mapping[str, Any]):
    """One tracking event: a read-only dict plus attributes from ``@event_property``.

    ``evt["user"]`` reads the raw field, ``evt.agent`` a registered property, and
    ``evt.event`` is the raw dict itself (for storing it as is).
    """

    __slots__ = ("_computed", "_properties", "_raw")

    def __init__(self, raw: Mapping[str, Any], properties: Mapping[str, Property] | None = None) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_properties", properties or {})
        object.__setattr__(self, "_computed", {})

    @property
    def event(self) -> dict[str, Any]:
        """A copy of the raw event dict, safe to store or change."""
        return dict(self._raw)

    def __getitem__(self, key: str) -> Any:
        return self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __getattr__(self, name: str) -> Any:
        computed = self._computed
        if name in computed:
            return computed[name]
        prop = self._properties.get(name)
        if prop is None:
            known = ", ".join(sorted(self._properties)) or "none registered"
            raise AttributeError(f"events have no property {name!r} (known: {known}); see /event_properties")
        computed[name] = value = prop(self)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("events are read-only; copy evt.event to change a field")

    def __repr__(self) -> str:
        return f"Event({self._raw!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy/pickle would otherwise build an empty instance and recurse in __getattr__.
        return (type(self), (self._raw, self._properties))


def parse_events(payload: Any) -> list[dict[str, Any]]:
    """Turn what an LMS sent into a list of event dicts.

    Accepts one event (a JSON object), a list of events, a JSON string of either, a list
    of JSON strings, or newline-delimited JSON. Raises ``InvalidEvent`` saying which
    item is wrong.
    """
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"the request body is not UTF-8 (byte {exc.start})") from None
    if isinstance(payload, str):
        payload = _parse_text(payload)
    items = payload if isinstance(payload, list) else [payload]
    events = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = _parse_json(item, f"item {index}")
        if not isinstance(item, dict):
            raise InvalidEvent(f"item {index} is {_kind(item)}, not an event (a JSON object)")
        events.append(item)
    if not events:
        raise InvalidEvent("no events in the request")
    return events


def _parse_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        raise InvalidEvent("the request body is empty; send a JSON event, a list of events, or JSON lines")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as first_error:
        lines = text.splitlines()  # not stripped: line numbers count the body's leading blank lines
        if len(stripped.splitlines()) < 2:
            raise InvalidEvent(f"the request body is not JSON: {first_error}") from None
        return [_parse_json(line, f"line {n + 1}") for n, line in enumerate(lines) if line.strip()]


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"{where} is not valid JSON: {exc}") from None


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
