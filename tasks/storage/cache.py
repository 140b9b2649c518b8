"""``cache``: a module's own namespace in Redis."""

from __future__ import annotations

from typing import Any

import redis

from tasks.codec.serialization import dumps, loads
from tasks.errors import ReadOnlyError
from tasks.storage.keys import Keys


class Cache:
    """Key/value cache of one analytics module; values keep numpy/pandas/datetime types."""

    def __init__(self, client: redis.Redis, module: str, keys: Keys) -> None:
        self._client = client
        self._prefix = keys.cache(module)

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when absent or expired."""
        raw = self._client.get(self._prefix + key)
        return default if raw is None else loads(raw)

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        """Store ``value`` under ``key``, for ``timeout`` seconds (None: until deleted)."""
        ttl = None if timeout is None else max(1, round(timeout * 1000))
        self._client.set(self._prefix + key, dumps(value), px=ttl)

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._client.delete(self._prefix + key)


class ReadOnlyCache:
    """Another module's cache for reading: ``get``; ``set`` and ``delete`` are refused."""

    def __init__(self, cache: Cache, module: str) -> None:
        self._cache = cache
        self.module = module

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when absent or expired."""
        return self._cache.get(key, default)

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        """Refused: a module writes only its own cache."""
        raise ReadOnlyError.refusing(self.module, "cache", f"set({key!r})")

    def delete(self, key: str) -> None:
        """Refused: a module writes only its own cache."""
        raise ReadOnlyError.refusing(self.module, "cache", f"delete({key!r})")
