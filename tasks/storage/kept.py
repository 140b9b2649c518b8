"""Bounded Redis streams of records kept for an operator (dead letters, conflicts)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis

from tasks.storage.replies import text


class KeptStream:
    """Records in the Redis stream ``key``, at most about ``max_entries`` (the oldest trimmed), read in pages."""

    def __init__(self, client: redis.Redis, key: str, max_entries: int) -> None:
        self._client = client
        self.key = key
        self._max = max_entries

    def add(self, records: Iterable[dict[str, Any]]) -> list[str]:
        """Append records (flat mappings of text and numbers) in one round trip; returns their entry ids."""
        pipe = self._client.pipeline(transaction=False)
        for fields in records:
            pipe.xadd(self.key, fields, maxlen=self._max, approximate=True)  # type: ignore[arg-type]
        return [text(entry) for entry in pipe.execute()]

    def entries(self) -> Iterator[tuple[str, dict[str, str]]]:
        """Every record (oldest first) as its entry id and text fields."""
        start = "-"
        while True:
            page: list[Any] = self._client.xrange(self.key, min=start, max="+", count=500)  # type: ignore[assignment]
            if not page:
                return
            for entry_id, fields in page:
                yield text(entry_id), {text(k): text(v) for k, v in fields.items()}
            start = "(" + text(page[-1][0])

    def get(self, entry_id: str) -> dict[str, str] | None:
        """The text fields of one record (``entry_id`` a stream id, ``ms-seq``), or None when it is not kept."""
        page: list[Any] = self._client.xrange(self.key, min=entry_id, max=entry_id, count=1)  # type: ignore[assignment]
        return {text(k): text(v) for k, v in page[0][1].items()} if page else None

    def remove(self, entry_ids: Sequence[str]) -> None:
        """Delete records by entry id."""
        if entry_ids:
            self._client.xdel(self.key, *entry_ids)

    def count(self) -> int:
        """How many records are kept."""
        return int(self._client.xlen(self.key))
