"""Redis replies as text: redis-py answers bytes unless a client decodes."""

from __future__ import annotations


def text(value: bytes | str) -> str:
    """A Redis reply (a key, an id, a field) as ``str``."""
    return value.decode() if isinstance(value, bytes) else value
