"""Redis memory by key family: ``MEMORY USAGE`` of every key, summed per family.

A family is the first segment after the deployment's prefix (``seen``, ``batch``,
``batchdata``, ``done``, ``receipt``, ...), or one of Celery's: task results
(``celery-task-meta-*``), chord counters (``*.j``, ``*.t``); everything else (broker queues,
kombu's hashes) is ``other``. ``MEMORY USAGE`` counts a key's name, value and dictionary
entry, not its expiry entry (about 24-40 bytes more per key with a TTL) nor allocator slack
beyond the size classes Redis reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import redis

SCAN_COUNT = 1000


@dataclass
class Family:
    """The keys of one family: how many, and their bytes as ``MEMORY USAGE`` reports them."""

    keys: int = 0
    bytes: int = 0


def family(key: str, prefix: str) -> str:
    """The family a key belongs to (see the module docstring)."""
    if key.startswith(prefix):
        return key[len(prefix) :].split(":", 1)[0]
    if key.startswith("celery-task-meta-"):
        return "celery results"
    if key.endswith((".j", ".t")):
        return "celery chords"
    return "other"


def _chunks(client: redis.Redis) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for key in client.scan_iter(count=SCAN_COUNT):
        chunk.append(key)
        if len(chunk) >= SCAN_COUNT:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def families(client: redis.Redis, prefix: str) -> dict[str, Family]:
    """Every key of the Redis database, grouped by family (``MEMORY USAGE ... SAMPLES 0``: exact)."""
    answer: dict[str, Family] = {}
    for chunk in _chunks(client):
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, used in zip(chunk, pipe.execute(), strict=True):
            if used is None:  # expired between SCAN and MEMORY USAGE
                continue
            kept = answer.setdefault(family(key.decode(errors="replace"), prefix), Family())
            kept.keys += 1
            kept.bytes += int(used)
    return answer


def growth(before: dict[str, Family], after: dict[str, Family]) -> dict[str, Family]:
    """Per family, what ``after`` holds beyond ``before`` (keys and bytes; may be negative)."""
    names = sorted(set(before) | set(after), key=lambda n: -(after.get(n, Family()).bytes))
    return {
        name: Family(
            after.get(name, Family()).keys - before.get(name, Family()).keys,
            after.get(name, Family()).bytes - before.get(name, Family()).bytes,
        )
        for name in names
    }
