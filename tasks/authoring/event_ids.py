"""Event identity: the id a handler sees as ``evt.id``, its dedupe key, and the event's fingerprint.

An id has two parts, the sender's scope and a base id (see README, "Idempotency"):

- **Scope.** Events posted with an API token belong to that token's name (the sender); with
  auth off, and for replays without a sender, they belong to one anonymous scope. A named
  sender's ids read ``~@<sender>:<base>`` (``%`` and ``:`` in the name written ``%25`` and
  ``%3A``); anonymous ids are the base as is. No base starts with ``~@`` (a string ``id``
  starting with ``~`` is escaped, see below), so one scope's ids never equal another's,
  the anonymous scope's included: an anonymous ``lms:e1`` is not token ``lms``'s ``e1``.
- **Base.** The id the event carries, typed and qualified by its field: a string ``id``
  as is (``"5f0c…"``), a number ``id`` as ``~id.int:777001``, a string ``event_id`` as
  ``~event_id:abc``, a number one as ``~event_id.int:5``; a string ``id`` that itself starts
  with ``~`` is written ``~id:~…``. So the number 777001 and the string "777001" differ, and
  an ``event_id`` never equals another event's ``id``. Without a usable id (a non-empty
  string or an integer of at most ``MAX_ID_LENGTH`` characters): an event with a time field
  (``TIME_FIELDS``) is identified by its content, a UUID5 of its canonical JSON (a re-sent
  tracking-log line is the same event); one without a time is one occurrence, identified
  by where it was accepted, ``~intake:<intake stream entry id>/<index in the entry>`` (two
  identical such events are two events, and a batcher that takes over an entry after a
  crash derives the same ids).

The fingerprint of an event is a short hash of its canonical JSON: dedupe keeps it per id,
so a different event under a known id is told apart from a re-send (a conflict).
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import uuid
from collections.abc import Callable, Mapping
from typing import Any

NAMESPACE = uuid.UUID("6f1c3a52-1d0e-4c55-9a43-2b7c7a0b9e11")
ID_FIELDS = ("id", "event_id")  # xAPI statements carry their UUID in "id"
TIME_FIELDS = ("time", "timestamp", "stored")  # Open edX tracking logs; xAPI statements (stored: by the LRS)
MAX_ID_LENGTH = 200
TAG = "~"  # starts every base id that is not a string ``id`` taken as is
NAMED = TAG + "@"  # starts every id in a named sender's scope; no base id starts with it
_NAMESPACE_BYTES = NAMESPACE.bytes


def _canonical_encoder() -> Callable[[Mapping[str, Any]], str]:
    """``json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)``, without building a
    ``JSONEncoder`` per call: the C encoder called directly where available (the batcher's hot path)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            # markers=None: no circular-reference check (an event is a tree: it came from JSON).
            c_encode = make(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
            sample = {"b": [1, 2.5, None, "\u00e9"], "a": {"d": True, "c": float("inf")}}
            if "".join(c_encode(sample, 0)) == json.dumps(sample, sort_keys=True, separators=(",", ":")):
                return lambda event: "".join(c_encode(event, 0))
        except TypeError:  # a Python whose C encoder takes other arguments
            pass
    return json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


_canonical = _canonical_encoder()


def canonical_json(event: Mapping[str, Any]) -> str:
    """The event as canonical JSON: sorted keys, no spaces, ASCII (the same text for the same event)."""
    return _canonical(event)


def carried_id(event: Mapping[str, Any]) -> str | None:
    """The base id of the ``id`` or ``event_id`` the event carries (typed, field-qualified), else None."""
    for field in ID_FIELDS:
        value = event.get(field)
        if isinstance(value, str):
            if not 0 < len(value) <= MAX_ID_LENGTH:
                continue
            if field == "id":
                return value if not value.startswith(TAG) else f"{TAG}id:{value}"
            return f"{TAG}{field}:{value}"
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
            if len(text) <= MAX_ID_LENGTH:
                return f"{TAG}{field}.int:{text}"
    return None


def has_time(event: Mapping[str, Any]) -> bool:
    """Whether the event says when it happened (a non-empty ``time``, ``timestamp`` or ``stored``)."""
    return any(event.get(field) not in (None, "") for field in TIME_FIELDS)


def occurrence_id(event: Mapping[str, Any], occurrence: str | None) -> str | None:
    """``~intake:<occurrence>`` for an event without a time when its occurrence is known, else None."""
    if occurrence is None or has_time(event):
        return None
    return f"{TAG}intake:{occurrence}"


def scoped(base: str, sender: str | None) -> str:
    """``base`` in the sender's scope: ``~@<sender>:<base>``, or ``base`` for the anonymous scope (None)."""
    if sender is None:
        return base
    return f"{NAMED}{sender.replace('%', '%25').replace(':', '%3A')}:{base}"


def _digest(canonical: str) -> bytes:
    """SHA-1 of the namespace and the canonical JSON: what UUID5 hashes, and the fingerprint's source."""
    return hashlib.sha1(_NAMESPACE_BYTES + canonical.encode()).digest()


def _content_id(digest: bytes) -> str:
    """The UUID5 of the event whose ``_digest`` this is (``str(uuid.uuid5(NAMESPACE, canonical))``),
    formatted without a ``uuid.UUID``: version 5 in the high nibble of byte 6, the RFC 4122 variant in byte 8."""
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# The RFC 4122 variant (bits 10) over the high nibble of byte 8, by the hex digit it replaces.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def fingerprint(canonical: str) -> str:
    """A short hash (16 hex digits) of an event's canonical JSON: equal for equal events."""
    return _digest(canonical)[:8].hex()


def event_id(
    event: Mapping[str, Any],
    *,
    sender: str | None = None,
    canonical: str | None = None,
    occurrence: str | None = None,
) -> str:
    """The event's id in ``sender``'s scope (None: anonymous); see the module docstring.

    ``occurrence`` (``<intake entry id>/<index>``) identifies an event that has neither an
    id nor a time; without it such an event falls back to its content, like one with a
    time. Pass ``canonical`` when the caller already has ``canonical_json(event)``.
    """
    base = carried_id(event) or occurrence_id(event, occurrence)
    if base is None:
        base = _content_id(_digest(canonical if canonical is not None else canonical_json(event)))
    return scoped(base, sender)


def identify(
    event: Mapping[str, Any], canonical: str, *, sender: str | None = None, occurrence: str | None = None
) -> tuple[str, str]:
    """The event's ``event_id`` and its ``fingerprint``, hashing its canonical JSON once (the batcher's hot path)."""
    digest = _digest(canonical)
    base = carried_id(event) or occurrence_id(event, occurrence) or _content_id(digest)
    return scoped(base, sender), digest[:8].hex()


def derive(event: Mapping[str, Any], canonical: str, *, sender: str | None = None) -> tuple[str | None, str]:
    """What the web app derives of an event at intake (``tasks.pipeline.stream``): its ``event_id``, or
    None for an event identified by its occurrence (the intake entry id is not known yet), and its
    ``fingerprint``."""
    digest = _digest(canonical)
    base = carried_id(event)
    if base is None:
        if not has_time(event):
            return None, digest[:8].hex()
        base = _content_id(digest)
    return scoped(base, sender), digest[:8].hex()


class Identifier:
    """``identify`` for the events of one sender's intake entry, the batcher's hot path: the scope's
    prefix built once, an event's occurrence (``<entry id>/<index>``) formatted only when it is needed."""

    def __init__(self, sender: str | None, entry_id: str) -> None:
        self._prefix = scoped("", sender)
        self._occurrence = f"{TAG}intake:{entry_id}/"

    def __call__(self, event: Mapping[str, Any], canonical: str, index: int) -> tuple[str, str]:
        """The ``event_id`` and ``fingerprint`` of the entry's event number ``index``."""
        digest = hashlib.sha1(_NAMESPACE_BYTES + canonical.encode()).digest()
        base = carried_id(event)
        if base is None:
            base = _content_id(digest) if has_time(event) else f"{self._occurrence}{index}"
        return self._prefix + base, digest[:8].hex()

    def occurrence(self, index: int) -> str:
        """The id of the entry's event number ``index`` when it has neither an id nor a time."""
        return f"{self._prefix}{self._occurrence}{index}"
