"""Dead letters: events a handler could not handle after every retry, kept for recovery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis

from tasks.storage.kept import KeptStream
from tasks.storage.keys import Keys
from tasks.storage.once import once_per_period

if TYPE_CHECKING:
    from tasks.pipeline.dispatch import Dispatcher


class DeadLetters:
    """A bounded Redis stream of failed (handler, events) pairs with error and traceback."""

    def __init__(self, client: redis.Redis, max_entries: int, keys: Keys) -> None:
        self._stream = KeptStream(client, keys.dead_letters, max_entries)
        self._client, self._keys = client, keys

    def add(self, handler: str, events: Sequence[Sequence[Any]], error: str, traceback: str, batch: str) -> str:
        """Keep events (``[id, received, raw]`` each) that ``handler`` failed on; returns the letter's id."""
        fields = {"handler": handler, "events": json.dumps(events), "error": error, "traceback": traceback}
        return self._stream.add([{**fields, "batch": batch, "time": time.time()}])[0]

    def retry_turn(self) -> bool:
        """Whether a retry of dead letters may run now: the first call in each ``RETRY_PERIOD``, cluster-wide."""
        return once_per_period(self._client, self._keys, RETRY_JOB, RETRY_PERIOD)

    def list(self, handler: str | None = None) -> Iterator[dict[str, Any]]:
        """Every dead letter (oldest first), optionally of one handler task."""
        for entry_id, fields in self._stream.entries():
            if handler is None or fields["handler"] == handler:
                yield _decode(entry_id, fields)

    def remove(self, letter_ids: Sequence[str]) -> None:
        """Delete dead letters (after they were re-dispatched)."""
        self._stream.remove(letter_ids)

    def count(self) -> int:
        """How many dead letters are kept."""
        return self._stream.count()


def _decode(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "id": entry_id,
        "handler": fields["handler"],
        "events": json.loads(fields["events"]),
        "error": fields["error"],
        "traceback": fields["traceback"],
        "batch": fields["batch"],
        "time": float(fields["time"]),
    }


RETRY_PERIOD = 10.0  # seconds: one retry of dead letters per period cluster-wide
RETRY_JOB = "deadletters.retry"


def retry_dead_letters(
    dead_letters: DeadLetters, dispatcher: Dispatcher, handler: str | None = None, letter_ids: Sequence[str] = ()
) -> list[str] | None:
    """Dispatch dead letters again (all, one handler's, or the given ones); returns the new batch ids,
    or None when another retry ran in this ``RETRY_PERIOD`` (cluster-wide: two retries at once would
    both dispatch the same letters).

    Each letter is removed once its events are with the broker; if the handler fails on
    them again, they come back as new dead letters.
    """
    if not dead_letters.retry_turn():
        return None
    wanted = set(letter_ids)
    letters = [x for x in dead_letters.list(handler) if not wanted or x["id"] in wanted]
    by_handler: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_handler.setdefault(letter["handler"], []).append(letter)
    batches = []
    for name, group in by_handler.items():
        records = [record for letter in group for record in letter["events"]]
        batches.append(dispatcher.dispatch(records, {name: None}))
        dead_letters.remove([letter["id"] for letter in group])
    return batches
