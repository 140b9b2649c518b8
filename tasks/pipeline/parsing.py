"""Parsing what a learning platform sends into events, refusing bad items one by one."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.codec.json_shape import MAX_DEPTH, holds_lone_surrogate, too_deep, unicode_text
from tasks.errors import InvalidEvent

# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): only text holding one can decode to a lone surrogate.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
MAX_LISTED_REJECTIONS = 100  # refused items listed with their reason; beyond, they are only counted
MAX_REASON_CHARS = 300  # a listed reason is cut to this (it may quote a value of the event)

log = logging.getLogger(__name__)

#: Told ``(where, offset)`` of a stored line that is skipped: a file or segment and a line number or byte offset.
OnMalformed = Callable[[str, int], None]


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
        check_unicode = SURROGATE_ESCAPE.search(payload) is not None or not (decoded or unicode_text(payload))
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


def json_object(line: str | bytes) -> dict[str, Any] | None:
    """The JSON object a line holds, or None for bad JSON, bad UTF-8, nesting too deep or another JSON value."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def stored_object(
    line: str | bytes, where: str, offset: int, on_malformed: OnMalformed | None, at: str | None = None
) -> dict[str, Any] | None:
    """The JSON object of a stored line (a log or tracking-log file), or None after logging a warning
    (at ``at``, default ``where:offset``) and telling ``on_malformed(where, offset)``."""
    record = json_object(line)
    if record is None:
        log.warning("%s: not a JSON object; line skipped", at or f"{where}:{offset}")
        if on_malformed is not None:
            on_malformed(where, offset)
    return record


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
