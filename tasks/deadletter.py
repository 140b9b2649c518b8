"""Dead letters: events a handler could not handle after every retry, kept for recovery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis

from tasks.dispatch import dispatch

if TYPE_CHECKING:
    from tasks.app import Insights

STREAM = "insights:deadletters"


class DeadLetters:
    """A bounded Redis stream of failed (handler, events) pairs with error and traceback."""

    def __init__(self, client: redis.Redis, max_entries: int) -> None:
        self._client = client
        self._max = max_entries

    def add(self, handler: str, events: Sequence[Sequence[Any]], error: str, traceback: str, batch: str) -> str:
        """Keep events (``[id, received, raw]`` each) that ``handler`` failed on; returns the letter's id."""
        fields = {
            "handler": handler,
            "events": json.dumps(events),
            "error": error,
            "traceback": traceback,
            "batch": batch,
            "time": time.time(),
        }
        entry = self._client.xadd(STREAM, fields, maxlen=self._max, approximate=True)  # type: ignore[arg-type]
        return _text(entry)

    def list(self, handler: str | None = None) -> Iterator[dict[str, Any]]:
        """Every dead letter (oldest first), optionally of one handler task."""
        start = "-"
        while True:
            page: list[Any] = self._client.xrange(STREAM, min=start, max="+", count=500)  # type: ignore[assignment]
            if not page:
                return
            for entry_id, fields in page:
                letter = _decode(entry_id, fields)
                if handler is None or letter["handler"] == handler:
                    yield letter
            start = "(" + _text(page[-1][0])

    def remove(self, letter_ids: Sequence[str]) -> None:
        """Delete dead letters (after they were re-dispatched)."""
        if letter_ids:
            self._client.xdel(STREAM, *letter_ids)

    def count(self) -> int:
        """How many dead letters are kept."""
        return int(self._client.xlen(STREAM))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    text = {_text(k): _text(v) for k, v in fields.items()}
    return {
        "id": _text(entry_id),
        "handler": text["handler"],
        "events": json.loads(text["events"]),
        "error": text["error"],
        "traceback": text["traceback"],
        "batch": text["batch"],
        "time": float(text["time"]),
    }


def retry_dead_letters(app: Insights, handler: str | None = None, letter_ids: Sequence[str] = ()) -> list[str]:
    """Dispatch dead letters again (all, one handler's, or the given ones); returns the new batch ids.

    Each letter is removed once its events are with the broker; if the handler fails on
    them again, they come back as new dead letters.
    """
    wanted = set(letter_ids)
    letters = [x for x in app.dead_letters.list(handler) if not wanted or x["id"] in wanted]
    by_handler: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_handler.setdefault(letter["handler"], []).append(letter)
    batches = []
    for name, group in by_handler.items():
        records = [record for letter in group for record in letter["events"]]
        batches.append(dispatch(app, records, {name: None}))
        app.dead_letters.remove([letter["id"] for letter in group])
    return batches
