"""Dead letters: events a handler could not handle after every retry, kept for recovery."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from tasks.storage.kept import KeptStream
from tasks.storage.keys import Keys

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

    def list(self, handler: str | None = None) -> Iterator[dict[str, Any]]:
        """Every dead letter (oldest first), optionally of one handler task."""
        for entry_id, fields in self._stream.entries():
            if handler is None or fields["handler"] == handler:
                yield _decode(entry_id, fields)

    def get(self, letter_id: str) -> dict[str, Any] | None:
        """One dead letter (as ``list`` gives them), or None when no letter has this id."""
        fields = self._stream.get(letter_id)
        return None if fields is None else _decode(letter_id, fields)

    def remove(self, letter_ids: Sequence[str]) -> None:
        """Delete dead letters."""
        self._stream.remove(letter_ids)

    def take(self, letters: Sequence[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Remove ``letters`` (as ``list`` gives them) and return those this call removed: of callers
        taking the same letter at once, exactly one gets it (``XDEL`` answers 1 to one only)."""
        pipe = self._client.pipeline(transaction=False)
        for letter in letters:
            pipe.xdel(self._stream.key, letter["id"])
        return [letter for letter, removed in zip(letters, pipe.execute(), strict=True) if removed == 1]

    def put_back(self, letters: Sequence[dict[str, Any]]) -> builtins.list[str]:
        """Keep again letters that were taken (under new entry ids, with their fields); returns the new ids."""
        fields = ("handler", "error", "traceback", "batch", "time")
        kept = [{**{f: letter[f] for f in fields}, "events": json.dumps(letter["events"])} for letter in letters]
        return self._stream.add(kept)

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


@dataclass
class Retry:
    """What a retry of dead letters sent: the letters it took (ids) and the batches it sent them as."""

    letters: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)


def retry_dead_letters(
    dead_letters: DeadLetters, dispatcher: Dispatcher, handler: str | None = None, letter_ids: Sequence[str] = ()
) -> Retry:
    """Dispatch dead letters again (all, one handler's, or the given ones).

    Removing a letter is what claims it: each handler's letters are removed first (``XDEL``), and
    only those this retry removed are dispatched, so retries running at once (two operators, a
    slow one overlapping the next) send each letter once, and retries of different handlers never
    wait for each other. If a dispatch fails, its letters are kept again (under new ids). If the
    handler fails on them again, they come back as new dead letters.
    """
    wanted = set(letter_ids)
    letters = [x for x in dead_letters.list(handler) if not wanted or x["id"] in wanted]
    by_handler: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_handler.setdefault(letter["handler"], []).append(letter)
    done = Retry()
    for name, group in by_handler.items():
        taken = dead_letters.take(group)
        if not taken:  # another retry took them all
            continue
        records = [record for letter in taken for record in letter["events"]]
        try:
            done.batches.append(dispatcher.dispatch(records, {name: None}))
        except BaseException:
            dead_letters.put_back(taken)
            raise
        done.letters.extend(letter["id"] for letter in taken)
    return done
