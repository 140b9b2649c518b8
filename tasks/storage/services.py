"""Connections and per-module resources, created lazily once per process."""

from __future__ import annotations

import os
from typing import Any

import pymongo
import redis
from pymongo.database import Database

from config.settings import Settings
from tasks.storage.cache import Cache
from tasks.storage.fs import FileStore
from tasks.storage.keys import Keys
from tasks.storage.mongo import database_name


class Services:
    """Redis and MongoDB clients, the Redis key names, plus each module's ``mongodb``, ``fs`` and ``cache``.

    Clients are made on first use and remade after a fork, so a prefork worker's children
    never share the parent's sockets.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self._pid = -1
        self._redis: redis.Redis | None = None
        self._mongo: pymongo.MongoClient[dict[str, Any]] | None = None

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._redis = None
            self._mongo = None

    @property
    def redis(self) -> redis.Redis:
        """The Redis client (cache, file expiry, batch records)."""
        self._check_fork()
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.redis, health_check_interval=30)
        return self._redis

    @property
    def mongo(self) -> pymongo.MongoClient[dict[str, Any]]:
        """The MongoDB client shared by every module's database."""
        self._check_fork()
        if self._mongo is None:
            self._mongo = pymongo.MongoClient(self.settings.mongo, serverSelectionTimeoutMS=10_000, connect=False)
        return self._mongo

    def mongodb(self, module: str) -> Database[dict[str, Any]]:
        """The database that belongs to ``module``."""
        return self.mongo[database_name(self.settings.mongo_db_prefix, module)]

    def fs(self, module: str) -> FileStore:
        """The file store that belongs to ``module``."""
        return FileStore(self.settings.fs_root, module, self.settings.fs_url_prefix, self.redis, self.keys)

    def cache(self, module: str) -> Cache:
        """The cache namespace that belongs to ``module``."""
        return Cache(self.redis, module, self.keys)

    def close(self) -> None:
        """Close the clients this process opened."""
        if self._mongo is not None:
            self._mongo.close()
        if self._redis is not None:
            self._redis.close()
        self._mongo = self._redis = None
