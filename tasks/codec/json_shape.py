"""Shapes of JSON no part of Insights accepts: nesting deeper than ``MAX_DEPTH``, and text
that is not Unicode (a lone UTF-16 surrogate such as ``"\\ud800"``, which no UTF-8 message,
database or JSON reader downstream can carry)."""

from __future__ import annotations

import re
from typing import Any

MAX_DEPTH = 100  # nesting levels of an event (MongoDB's limit too); deeper ones would break JSON decoding downstream
SURROGATE = re.compile("[\ud800-\udfff]")  # in a decoded str, only a lone surrogate (a pair decodes to one character)


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


def unicode_text(text: str) -> bool:
    """Whether a str holds no surrogate code point itself (one decoded from UTF-8 never does)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
