"""Redis clients from a URL: plain (``redis://``, ``rediss://``, ``unix://``) or through Sentinel
(``sentinel://``, docs/sentinel.md). Every Redis client of ours is made here."""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel

from config.redis_url import is_sentinel, sentinel_of, sentinel_target
from config.settings import Settings

# Options of a client that also apply to its connections to the Sentinel nodes, and their defaults
# there: a Sentinel node that does not answer is passed over for the next one.
_SENTINEL_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options")
_SENTINEL_DEFAULTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}


def redis_client(url: str, master: str = "", sentinel_password: str | None = None, **options: Any) -> redis.Redis:
    """A Redis client of ``url``; ``options`` (e.g. ``health_check_interval``) go to its connections.

    A plain URL is read by redis-py (``Redis.from_url``). A ``sentinel://`` URL gives a client of
    the master named ``master``: it asks the Sentinel nodes where the master is before each new
    connection and, after a failover, reconnects to the new master (a command on a connection to
    the demoted one fails with a connection error and is retried). ``ConfigError`` if the URL is
    malformed or ``master`` empty.
    """
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    target = sentinel_target(url, master, sentinel_password)
    shared = {key: value for key, value in options.items() if key in _SENTINEL_OPTIONS}
    sentinel_kwargs = {**_SENTINEL_DEFAULTS, **shared, **(target.sentinel_kwargs() or {})}
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(target.master, **target.master_kwargs(), **options)


def redis_of(settings: Settings, url: str | None = None, **options: Any) -> redis.Redis:
    """A client of the deployment's Redis (``REDIS_URL``), or of ``url`` (e.g. the broker's), with the
    deployment's Sentinel settings (``INSIGHTS_REDIS_SENTINEL_*``)."""
    url = settings.redis if url is None else url
    sentinel_of(settings, url)  # a malformed Sentinel URL is reported under its variable's name
    return redis_client(url, settings.redis_sentinel_master, settings.redis_sentinel_password, **options)


def close_client(client: redis.Redis) -> None:
    """Close ``client``'s connections, and those to the Sentinel nodes it asked (if it was made through Sentinel)."""
    client.close()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        manager.close()
