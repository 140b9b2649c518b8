"""Connections, stores and per-module resources, created lazily once per process; read-only views
of other modules' resources (the original's ``get_replica_*`` helpers)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import pymongo
import redis
from pymongo.database import Database
from redis import Redis

from config.settings import Settings
from tasks.errors import RegistrationError
from tasks.storage.cache import Cache, ReadOnlyCache
from tasks.storage.connections import close_client, redis_of
from tasks.storage.embedded_mongo import guarded, is_embedded
from tasks.storage.fs import SCRATCH_FOLDER, Backend, FileStore, GridBackend, LocalBackend, ReadOnlyFileStore
from tasks.storage.keys import Keys
from tasks.storage.mongo import ReadOnlyDatabase, database_name

# While a module's function runs: the services it runs with, and how to turn a module name
# (or its Python package) into a loaded analytics module's name (Registry.module_named).
_running: ContextVar[tuple[Services, Callable[[str], str]] | None] = ContextVar("insights_services", default=None)

T = TypeVar("T")


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
        self._built: dict[str, Any] = {}

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._redis = None
            self._mongo = None
            self._built = {}

    def once(self, name: str, build: Callable[[], T]) -> T:
        """What ``build`` makes (a store over these clients), built once per process under ``name``."""
        self._check_fork()
        if name not in self._built:
            self._built[name] = build()
        built: T = self._built[name]
        return built

    @property
    def redis(self) -> redis.Redis:
        """The Redis client (cache, file expiry, batch records)."""
        self._check_fork()
        if self._redis is None:
            self._redis = redis_of(self.settings, health_check_interval=30)
        return self._redis

    @property
    def broker_redis(self) -> Redis | None:
        """A client of the Redis broker (the Redis client itself unless ``BROKER_URL`` names another
        Redis), or None when the broker is not Redis (RabbitMQ)."""
        url = self.settings.broker
        if not url.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
            return None
        if url == self.settings.redis_url:
            return self.redis
        return self.once("broker_redis", lambda: redis_of(self.settings, url))  # through Sentinel: kombu's master

    @property
    def mongo(self) -> pymongo.MongoClient[dict[str, Any]]:
        """The MongoDB client shared by every module's database."""
        self._check_fork()
        if self._mongo is None:
            self._mongo = pymongo.MongoClient(self.settings.mongo, serverSelectionTimeoutMS=10_000, connect=False)
        return self._mongo

    def database(self, module: str) -> Database[dict[str, Any]]:
        """The database that belongs to ``module``, as pymongo gives it (the framework's own use)."""
        return self.mongo[database_name(self.settings.mongo_db_prefix, module)]

    def mongodb(self, module: str) -> Database[dict[str, Any]]:
        """The database that belongs to ``module``, as the module's functions get it: on the embedded
        nx-27017, the operations it would silently get wrong raise ``EmbeddedServerLimit``
        (``tasks.storage.embedded_mongo``); on MongoDB, the plain pymongo database."""
        database = self.database(module)
        if self.once("mongo-embedded", lambda: is_embedded(database)):
            return guarded(database)
        return database

    def fs(self, module: str) -> FileStore:
        """The file store that belongs to ``module``."""
        return FileStore(self.fs_backend(module), module, self.settings.fs_url_prefix, self.redis, self.keys)

    def fs_backend(self, module: str, kind: str | None = None) -> Backend:
        """Where ``module``'s files live: ``INSIGHTS_FS_BACKEND`` (or ``kind``: ``gridfs`` or ``local``)."""
        if (kind or self.settings.fs_backend) == "local":
            return LocalBackend(self.settings.fs_root / module, self.settings.fs_root / SCRATCH_FOLDER)
        backend = GridBackend(self.database(module))
        self.once(f"fs-indexes:{module}", backend.ensure_indexes)
        return backend

    def cache(self, module: str) -> Cache:
        """The cache namespace that belongs to ``module``."""
        return Cache(self.redis, module, self.keys)

    def close(self) -> None:
        """Close the clients this process opened."""
        if self._mongo is not None:
            self._mongo.close()
        if self._redis is not None:
            close_client(self._redis)
        self._mongo = self._redis = None
        self._built = {}


@contextmanager
def running_services(services: Services, resolve: Callable[[str], str]) -> Iterator[None]:
    """Make ``services`` the ones ``get_replica_*`` read through while a module's function runs.

    ``resolve`` turns the name a module passes (``grades`` or ``modules.grades``) into a
    loaded analytics module's name, or raises ``RegistrationError``.
    """
    token = _running.set((services, resolve))
    try:
        yield
    finally:
        _running.reset(token)


def get_replica_database(module: str) -> ReadOnlyDatabase:
    """The database of analytics module ``module`` (``grades`` or ``modules.grades``), read-only.

    The original's ``get_replica_database``; works inside a view, query, handler or cron job.
    Prefer calling the other module's queries (``query.<name>()``): they are its interface.
    """
    services, name = _replica("get_replica_database", module)
    return ReadOnlyDatabase(services.database(name), name)


def get_replica_filesystem(module: str) -> ReadOnlyFileStore:
    """The file store of analytics module ``module``, read-only (the original's ``get_replica_filesystem``)."""
    services, name = _replica("get_replica_filesystem", module)
    return ReadOnlyFileStore(services.fs(name))


def get_replica_cache(module: str) -> ReadOnlyCache:
    """The cache of analytics module ``module``, read-only (the original's ``get_replica_cache``)."""
    services, name = _replica("get_replica_cache", module)
    return ReadOnlyCache(services.cache(name), name)


def _replica(helper: str, module: str) -> tuple[Services, str]:
    running = _running.get()
    if running is None:
        raise RegistrationError(f"{helper}() works inside a view, query, handler or cron job of a module")
    if not isinstance(module, str):
        raise RegistrationError(f"{helper}() takes a module name such as 'grades', got {module!r}")
    services, resolve = running
    return services, resolve(module)
