"""Event identity: the id an event carries, or a deterministic UUID5 of its canonical JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

NAMESPACE = uuid.UUID("6f1c3a52-1d0e-4c55-9a43-2b7c7a0b9e11")
ID_FIELDS = ("id", "event_id")  # xAPI statements carry their UUID in "id"
MAX_ID_LENGTH = 200


def canonical_json(event: Mapping[str, Any]) -> str:
    """The event as canonical JSON: sorted keys, no spaces, ASCII (the same text for the same event)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)


def event_id(event: Mapping[str, Any], canonical: str | None = None) -> str:
    """The event's own id (``id``, ``event_id``) if it has a usable one, else UUID5 of its canonical JSON.

    Pass ``canonical`` when the caller already has ``canonical_json(event)``.
    """
    for field in ID_FIELDS:
        value = event.get(field)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            text = str(value)
            if 0 < len(text) <= MAX_ID_LENGTH:
                return text
    return str(uuid.uuid5(NAMESPACE, canonical if canonical is not None else canonical_json(event)))
