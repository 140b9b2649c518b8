"""The embedded Redis and Mongo-protocol servers, run as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pymongo
import pytest
import redis

from config.settings import Settings
from tasks.errors import EmbeddedServerError
from tasks.ops.cli import embedded_urls
from tasks.ops.embedded import EmbeddedMongo, EmbeddedRedis, EmbeddedServer, free_port

SERVERS = [EmbeddedRedis, EmbeddedMongo]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def port_is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on which the test itself is listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_redis_round_trip(tmp_path: Path) -> None:
    with (
        EmbeddedRedis(tmp_path / "redis", persist=False) as server,
        redis.Redis.from_url(server.url) as client,
    ):
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
    assert not (tmp_path / "redis" / "appendonly.aof").exists()


def test_mongo_round_trip(tmp_path: Path) -> None:
    with (
        EmbeddedMongo(tmp_path / "mongo") as server,
        pymongo.MongoClient[dict[str, Any]](server.url) as client,
    ):
        client.insights.events.insert_one({"_id": 1, "kind": "play"})
        assert client.insights.events.find_one({"_id": 1}) == {"_id": 1, "kind": "play"}
    assert (tmp_path / "mongo" / "insights.db").exists()


@pytest.mark.parametrize("server_class", SERVERS)
def test_stop_closes_the_port_and_ends_the_process(tmp_path: Path, server_class: type[EmbeddedServer]) -> None:
    server = server_class(tmp_path).start()
    pid = server.pid
    assert pid is not None and server.running()
    server.stop()
    assert not server.running() and server.pid is None
    assert process_is_gone(pid)
    assert port_is_closed(server.port)


@pytest.mark.parametrize("server_class", SERVERS)
def test_stop_is_idempotent_and_safe_before_start(tmp_path: Path, server_class: type[EmbeddedServer]) -> None:
    server = server_class(tmp_path / "new" / "dir")
    server.stop()
    assert (tmp_path / "new" / "dir").is_dir()
    assert not server.running()
    server.start()
    server.stop()
    server.stop()
    assert not server.running()


def test_redis_restart_keeps_data_and_port(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, port=free_port(), persist=True).start()
    port = server.port
    try:
        with redis.Redis.from_url(server.url) as client:
            client.set("queued", "message")
        server.stop()
        server.start()
        assert server.port == port
        with redis.Redis.from_url(server.url) as client:
            assert client.get("queued") == b"message"
    finally:
        server.stop()
    assert (tmp_path / "appendonly.aof").exists()


@pytest.mark.slow  # servers that fail to start
@pytest.mark.parametrize("server_class", SERVERS)
def test_start_on_a_taken_port_raises_with_the_log(
    tmp_path: Path, taken_port: int, server_class: type[EmbeddedServer]
) -> None:
    server = server_class(tmp_path, port=taken_port)
    with pytest.raises(EmbeddedServerError) as caught:
        server.start()
    message = str(caught.value)
    assert server.name in message
    assert f"port {taken_port}" in message
    assert "command:" in message
    assert "last lines of" in message and str(tmp_path) in message
    assert "already in use" in message.lower()
    assert not server.running()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_does_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    script = (
        "import sys; from tasks.ops.embedded import EmbeddedRedis; "
        f"s = EmbeddedRedis({str(tmp_path)!r}, persist=False).start(); "
        "print(s.port, s.pid, flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    ) as parent:
        assert parent.stdout is not None
        port, pid = map(int, parent.stdout.readline().split())
        assert not port_is_closed(port)
        parent.send_signal(signal.SIGKILL)
    try:
        # The orphan may linger as a zombie, so watch its port, not its pid.
        assert wait_until(lambda: port_is_closed(port))
    finally:
        if not port_is_closed(port):
            os.kill(pid, signal.SIGKILL)


def test_run_starts_the_embedded_redis_with_maxmemory_and_noeviction(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mongo_url="mongodb://unused", redis_maxmemory="2mb")
    with ExitStack() as stack:
        client = redis.Redis.from_url(embedded_urls(settings, stack)["redis_url"])
        assert client.config_get("maxmemory")["maxmemory"] == str(2 * 1024 * 1024)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.set("first", "kept")
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            for n in range(10_000):
                client.set(f"filler-{n}", "x" * 10_000)
        assert client.get("first") == b"kept"  # full means refused writes, never lost data
        client.close()
