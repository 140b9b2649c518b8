"""Redis behind Sentinel (docs/sentinel.md): our client, the redriver, Celery's broker and result
backend and RedBeat find the master through a real Sentinel, and follow it through a failover.

Each test starts its own master, replica and Sentinel (redis-server processes on free ports).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.ops.embedded import HOST, EmbeddedRedis, EmbeddedSentinel
from tasks.storage.connections import close_client, redis_of
from tests.conftest import COMMANDS, start_process, start_worker, stop_process, wait_for

MASTER = "insights-master"
TIMEOUT = 60.0


@dataclasses.dataclass
class Servers:
    """A master, its replica and a Sentinel monitoring them."""

    master: EmbeddedRedis
    replica: EmbeddedRedis
    sentinel: EmbeddedSentinel

    def direct(self, server: EmbeddedRedis, db: int = 0) -> redis.Redis:
        """A plain client of one server (not through Sentinel)."""
        return redis.Redis(host=HOST, port=server.port, db=db)

    def master_port(self) -> int:
        """The port of the master, as the Sentinel names it."""
        with redis.Redis(host=HOST, port=self.sentinel.port) as client:
            return int(client.sentinel_get_master_addr_by_name(MASTER)[1])

    def fail_over(self) -> None:
        """Promote the replica (``SENTINEL FAILOVER``); wait until the Sentinel names it the master and has
        demoted the old master.

        Sentinel demotes a reachable old master only once it has reported itself a master for 8 s
        after the promotion (``SENTINEL_PUBLISH_PERIOD * 4`` in Redis' sentinel.c): until then clients
        still connected to it keep writing there (docs/sentinel.md, *Failover*)."""
        with redis.Redis(host=HOST, port=self.sentinel.port, decode_responses=True) as client:

            def replica_ready() -> bool:
                replicas = client.sentinel_slaves(MASTER)
                return any(
                    r["port"] == self.replica.port and r.get("master-link-status") == "ok" and not r["is_sdown"]
                    for r in replicas
                )

            wait_for(replica_ready, timeout=TIMEOUT, what="the Sentinel to see the replica in sync")
            client.execute_command("SENTINEL", "FAILOVER", MASTER)
        wait_for(lambda: self.master_port() == self.replica.port, timeout=TIMEOUT, what="the Sentinel to promote")
        with self.direct(self.master) as old:
            wait_for(
                lambda: old.info("replication")["role"] == "slave", timeout=TIMEOUT, what="the old master's demotion"
            )


@contextlib.contextmanager
def sentinel_servers(root: Path) -> Iterator[Servers]:
    """Start a master, a replica in sync with it, then a Sentinel (which learns of the replica from the master)."""
    with contextlib.ExitStack() as stack:
        master = stack.enter_context(EmbeddedRedis(root / "master", persist=False))
        replica = stack.enter_context(EmbeddedRedis(root / "replica", persist=False, replica_of=master.port))
        with redis.Redis(host=HOST, port=replica.port, decode_responses=True) as client:
            wait_for(
                lambda: client.info("replication").get("master_link_status") == "up",
                timeout=TIMEOUT,
                what="the replica to sync",
            )
        sentinel = stack.enter_context(EmbeddedSentinel(root / "sentinel", master.port, MASTER))
        yield Servers(master, replica, sentinel)


def through_sentinel(settings: Settings, servers: Servers, tmp_path: Path, **changes: Any) -> Settings:
    """The deployment's settings with Redis (and broker) behind the Sentinel."""
    return dataclasses.replace(
        settings,
        redis_url=servers.sentinel.url,
        redis_sentinel_master=MASTER,
        data_dir=tmp_path / "data",
        fs_root=tmp_path / "data" / "files",
        **changes,
    )


def test_our_client_and_the_redriver_find_the_master_through_sentinel(settings: Settings, tmp_path: Path) -> None:
    with sentinel_servers(tmp_path) as servers:
        # The broker in database 1 of the same master, the rest in database 0.
        broker_url = servers.sentinel.url.replace("/0", "/1")
        own = through_sentinel(settings, servers, tmp_path, broker_url=broker_url)
        client = redis_of(own)
        try:
            client.set("greeting", "hello")
            assert servers.direct(servers.master).get("greeting") == b"hello"
            assert servers.direct(servers.replica).get("greeting") in (None, b"hello")  # replication is async
        finally:
            close_client(client)

        # The redriver reads kombu's lists on the broker's master, in the broker's database.
        app = create_insights(own, load_modules=False)
        try:
            servers.direct(servers.master, db=1).rpush("events", b"message")
            broker = app.services.broker_redis
            assert broker is not None
            assert broker.lrange("events", 0, -1) == [b"message"]
            assert broker.connection_pool.connection_kwargs["db"] == 1
            close_client(broker)
        finally:
            app.services.close()


@pytest.mark.slow
def test_our_client_follows_a_failover_to_the_new_master(settings: Settings, tmp_path: Path) -> None:
    with sentinel_servers(tmp_path) as servers:
        app = create_insights(through_sentinel(settings, servers, tmp_path), load_modules=False)
        client = app.services.redis
        try:
            client.set("before", "1")
            wait_for(lambda: servers.direct(servers.replica).get("before"), timeout=TIMEOUT, what="replication")
            servers.fail_over()

            # The same client reaches the new master: a write lands there (its connection to the demoted
            # master was closed by Sentinel; the command is retried on a new one), and what was written
            # before is still there.
            new_master = servers.direct(servers.replica)
            client.set("after", "2")
            assert new_master.get("after") == b"2"
            assert client.get("before") == b"1"
            assert client.connection_pool.get_master_address()[1] == servers.replica.port
        finally:
            app.services.close()


def run_query(app: Insights, name: str, **kwargs: Any) -> Any:
    """Send a query task, wait for its result (the broker and backend are behind the Sentinel)."""
    result = app.celery.tasks[name].apply_async(kwargs=kwargs)
    try:
        return result.get(timeout=TIMEOUT)
    finally:
        result.forget()


@pytest.mark.slow
def test_celery_broker_backend_and_redbeat_work_through_sentinel_and_after_a_failover(
    settings: Settings, tmp_path: Path
) -> None:
    with sentinel_servers(tmp_path) as servers:
        # Beat's lock outlives the ~10 s during which beat still extends it on the old master (the
        # default, 60 s, does too); with 5 s the copy on the new master expires and beat exits.
        own = through_sentinel(settings, servers, tmp_path, beat_lock_timeout=20)
        app = create_insights(own)
        processes = []
        try:
            app.services.cache("testmodule").set("answer", 42)
            worker = start_worker(own, tmp_path / "worker.log")
            processes.append(worker)
            beat = start_process(own, COMMANDS.beat(), tmp_path / "beat.log")
            processes.append(beat)

            # Broker (control ping over the broker's fanout, then a task round trip) and result backend.
            wait_for(
                lambda: worker.poll() is not None or app.celery.control.ping(timeout=0.5),
                timeout=TIMEOUT,
                what="the worker to answer a ping",
            )
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert run_query(app, "query.djt_cache_get", key="answer") == 42
            master = servers.direct(servers.master)

            # RedBeat takes its single-beat lock on the master.
            lock = f"{own.redis_prefix}beat:lock"
            wait_for(lambda: beat.poll() is not None or master.exists(lock), timeout=TIMEOUT, what="beat's lock")
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()[-3000:]

            # After a failover the worker, the result backend and beat carry on with the new master.
            servers.fail_over()
            new_master = servers.direct(servers.replica)
            app.services.cache("testmodule").set("answer", 43)
            assert run_query(app, "query.djt_cache_get", key="answer") == 43
            # Beat extends its lock every second: on the new master, its time to live goes up again.
            seen = [new_master.pttl(lock)]

            def extended() -> bool:
                seen.append(new_master.pttl(lock))
                return seen[-1] > seen[-2] > 0

            wait_for(extended, timeout=TIMEOUT, what="beat to extend its lock on the new master")
            assert worker.poll() is None and beat.poll() is None
            assert "Acquired lock" in (tmp_path / "beat.log").read_text()
        finally:
            stop_process(*(p for p in processes if p.poll() is None))
            app.services.close()
