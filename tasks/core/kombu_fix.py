"""A workaround for kombu's Redis transport (celery 5.7 / kombu 5.7), applied once per process by
``create_insights``."""

from __future__ import annotations

from typing import Any


def tolerate_collected_redis_transport() -> None:
    """Keep a worker alive when the Redis broker goes away while it holds unacknowledged tasks.

    Found by tests/faults (Redis restarted under load: the prefork worker exited in about one
    run of five). On connection loss, celery 5.7's consumer calls ``connection.collect()``,
    which drops the transport's client, then carries on with a new connection; but the old
    channel is still used afterwards: to close it (restoring unacknowledged messages) and to
    acknowledge tasks that finish after the reconnection. Each builds a connection pool from
    the dropped client and raises ``AttributeError: 'NoneType' object has no attribute
    'hostname'``, which is no connection error, so it is not handled: "Unrecoverable error",
    the worker stops for good. Here it becomes a connection error, which those code paths
    already handle (log, go on). Nothing is lost: messages of the old channel stay in
    Redis's ``unacked`` hash and are delivered again after the visibility timeout, as when
    Redis is down during the restore; handlers are idempotent.
    """
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    connparams = kombu_redis.Channel._connparams
    if getattr(connparams, "insights_tolerant", False):
        return

    def tolerant_connparams(self: Any, asynchronous: bool = False) -> Any:
        if getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("this channel's broker connection was closed after a connection loss")
        return connparams(self, asynchronous=asynchronous)

    setattr(tolerant_connparams, "insights_tolerant", True)  # noqa: B010
    setattr(kombu_redis.Channel, "_connparams", tolerant_connparams)  # noqa: B010
