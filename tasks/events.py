"""Events: read-only mappings with derived properties, and parsing of what the LMS sends."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.errors import InvalidEvent
from tasks.event_ids import event_id

Property = Callable[["Event"], Any]
MAX_DEPTH = 100  # nesting levels of an event (MongoDB's limit too); deeper ones would break JSON decoding downstream
# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): only text holding one can decode to a lone surrogate.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
SURROGATE = re.compile("[\ud800-\udfff]")  # in a decoded str, only a lone surrogate (a pair decodes to one character)
MAX_LISTED_REJECTIONS = 100  # refused items listed with their reason; beyond, they are only counted
MAX_REASON_CHARS = 300  # a listed reason is cut to this (it may quote a value of the event)


class Event(Mapping[str, Any]):
    """One tracking event: a read-only dict plus attributes from ``@event_property``.

    ``evt["user"]`` reads the raw field, ``evt.agent`` a registered property,
    ``evt.event`` is the raw dict itself (for storing it as is), ``evt.id`` the event's
    id (see ``tasks.event_ids``) and ``evt.received`` when it was accepted (unix time).
    """

    __slots__ = ("_computed", "_id", "_properties", "_raw", "received")

    def __init__(
        self,
        raw: Mapping[str, Any],
        properties: Mapping[str, Property] | None = None,
        id: str | None = None,
        received: float | None = None,
    ) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_properties", properties or {})
        object.__setattr__(self, "_computed", {})
        object.__setattr__(self, "_id", id)
        object.__setattr__(self, "received", received)

    @property
    def id(self) -> str:
        """The event's id (``tasks.event_ids``): given by the batcher, in its sender's scope.

        An event made without one (e.g. in a module's own test) derives it in the anonymous
        scope: the id it carries (typed, field-qualified), else a UUID5 of its canonical JSON.
        """
        if self._id is None:
            object.__setattr__(self, "_id", event_id(self._raw))
        return self._id

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
        return (type(self), (self._raw, self._properties, self._id, self.received))


@dataclass
class ParsedEvents:
    """The events found in a request, and the items refused: the first ``MAX_LISTED_REJECTIONS``
    listed (by index, with the reason), all of them counted."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: How many items were refused, listed or not.
    rejected_count: int = 0
    #: The body was a JSON array of objects and every item was accepted: it can be stored verbatim.
    verbatim: bool = False


def parse_events(payload: Any, check: Callable[[dict[str, Any]], str | None] | None = None) -> ParsedEvents:
    """Turn what an LMS sent into event dicts, refusing bad items one by one.

    Accepts one event (a JSON object), a list of events, a JSON string of either, a list
    of JSON strings, or newline-delimited JSON. Items that are not JSON objects, nest more
    than ``MAX_DEPTH`` levels, or hold a lone surrogate (``"\\ud800"``: not Unicode text) are
    reported in ``rejected`` by index (line number, for JSON lines), and so are events for
    which ``check`` returns a reason (e.g. "is about user 'bob'", following "item 3 "). Only
    the first ``MAX_LISTED_REJECTIONS`` are listed, each reason cut to ``MAX_REASON_CHARS``;
    ``rejected_count`` counts them all (so what reports them stays small whatever was sent).
    Raises ``InvalidEvent`` when the body as a whole is unusable or holds no valid event.
    """
    decoded = isinstance(payload, (bytes, bytearray))  # strict UTF-8 decoding refuses surrogates itself
    if decoded:
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"the request body is not UTF-8 (byte {exc.start})") from None
    line_numbers: list[int] | None = None
    check_unicode = True  # whether items may hold lone surrogates: the full check costs, the escape search little
    if isinstance(payload, str):
        check_unicode = SURROGATE_ESCAPE.search(payload) is not None or not (decoded or _encodable(payload))
        payload, line_numbers = _parse_text(payload)
    items = payload if isinstance(payload, list) else [payload]
    parsed = ParsedEvents(verbatim=isinstance(payload, list) and line_numbers is None)
    for index, item in enumerate(items):
        where = f"item {index}" if line_numbers is None else f"line {line_numbers[index]}"
        if isinstance(item, str):
            try:
                item = _loads(item)
            except ValueError as exc:
                item = InvalidEvent(f"{where} is not valid JSON: {exc}")
            parsed.verbatim = False
        if isinstance(item, dict) and too_deep(item):
            item = InvalidEvent(f"{where} is nested more than {MAX_DEPTH} levels deep")
        elif isinstance(item, dict) and check_unicode and holds_lone_surrogate(item):
            item = InvalidEvent(
                f"{where} holds a lone surrogate (an escape such as \\ud800 without its pair) in a key or string; "
                "that is not Unicode text: send the character itself or both halves of its pair"
            )
        elif isinstance(item, dict) and check is not None and (refusal := check(item)) is not None:
            item = InvalidEvent(f"{where} {refusal}")
        if isinstance(item, dict):
            parsed.events.append(item)
            continue
        parsed.rejected_count += 1
        parsed.verbatim = False
        if len(parsed.rejected) >= MAX_LISTED_REJECTIONS:
            continue  # counted, not listed
        if isinstance(item, InvalidEvent):
            reason = str(item)
        else:
            reason = f"{where} is {_kind(item)}, not an event (a JSON object)"
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        parsed.rejected.append({"index": index, "error": reason})
    if not parsed.events:
        if parsed.rejected:
            raise InvalidEvent(f"no valid event in the request; {parsed.rejected[0]['error']}")
        raise InvalidEvent("no events in the request")
    return parsed


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON value nests objects and arrays more than ``limit`` levels deep (no recursion)."""
    level = [value]
    for _ in range(limit):
        level = [v for c in level if isinstance(c, (dict, list)) for v in (c.values() if isinstance(c, dict) else c)]
        if not level:
            return False
    return True


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a lone UTF-16 surrogate in a string or key, at any depth (no recursion).

    Such a string cannot be encoded as UTF-8, so MongoDB, JSON readers and result backends
    choke on it downstream."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _encodable(text: str) -> bool:
    """Whether a str holds no surrogate code point itself (one decoded from UTF-8 never does)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_text(text: str) -> tuple[Any, list[int] | None]:
    """The JSON value of a body; for JSON lines, the lines' values and their line numbers."""
    if not text.strip():
        raise InvalidEvent("the request body is empty; send a JSON event, a list of events, or JSON lines")
    try:
        return _loads(text), None
    except ValueError as first_error:
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if len(numbered) < 2:
            raise InvalidEvent(f"the request body is not JSON: {first_error}") from None
        values: list[Any] = []
        for number, line in numbered:
            try:
                values.append(_loads(line))
            except ValueError as exc:
                values.append(InvalidEvent(f"line {number} is not valid JSON: {exc}"))
        return values, [n for n, _ in numbered]


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
