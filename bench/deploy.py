"""The benchmark deployment: own Redis and nx-27017, and the real production processes.

Processes run with the environment of ``Settings.to_env()``: the built-in ``modules`` are
excluded by name (``INSIGHTS_EXCLUDE_MODULES``) so only ``bench.modules`` (four trivial
handlers) loads; with ``modules="builtin"`` it is the other way round (the built-in modules,
as a default deployment loads them, and no ``bench.modules``).
"""

from __future__ import annotations

import contextlib
import os
import pkgutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil
import redis

from config.celery import SERIALIZER_NAME
from config.processes import Commands
from config.settings import ROOT, Settings
from tasks.codec.serialization import register_kombu_serializer
from tasks.ops.embedded import EmbeddedMongo, EmbeddedRedis, free_port
from tasks.pipeline.stream import GROUP
from tasks.storage.keys import Keys

BUILTIN_MODULES = tuple(m.name for m in pkgutil.iter_modules([str(ROOT / "modules")]))
WEB_MODES = {"sync": None, "gthread": 4}  # gunicorn threads per worker (None: sync workers)
WORKER_MODES = ("prefork", "solo2")
START_TIMEOUT = 90.0
# How the benchmark starts processes (config/processes.py): quiet workers, logging at WARNING.
COMMANDS = Commands(loglevel="WARNING", quiet=True)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment of a benchmark child process: ours plus ``extra``, repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSIGHTS_", "QUEUE_"))}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` (a ``Commands`` line) in the repository, in its own session, logging to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM one process we started, SIGKILL it (and its group) if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)  # its own session: only our process and its children
            process.wait(timeout=5)


def wait_until(probe, timeout: float, what: str, alive: list[subprocess.Popen[bytes]] = ()) -> None:
    """Poll ``probe`` until true; raise when ``timeout`` passes or a process in ``alive`` exits."""
    deadline = time.monotonic() + timeout
    while not probe():
        dead = [p.args for p in alive if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: a process exited early: {dead}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class Servers:
    """Our own Redis (no persistence) and nx-27017 on free loopback ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis = EmbeddedRedis(root / "redis", persist=False)
        self.mongo = EmbeddedMongo(root / "mongo")

    def __enter__(self) -> Servers:
        self.redis.start()
        try:
            self.mongo.start()
        except BaseException:
            self.redis.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.mongo.stop()
        self.redis.stop()

    def url(self, db: int = 0) -> str:
        """The URL of one Redis database."""
        return self.redis.url.rsplit("/", 1)[0] + f"/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A new client of one Redis database."""
        return redis.Redis.from_url(self.url(db))


@dataclass
class Deployment:
    """Web (gunicorn), batcher and Celery worker(s) of one configuration."""

    servers: Servers
    web_mode: str = "sync"
    worker_mode: str = "prefork"
    logs: Path = field(default_factory=lambda: Path("/tmp"))
    batch_size: int = Settings.batch_size
    batchers: int = 1  # batcher processes: one is active, the others stand by (tasks/pipeline/batcher.py)
    event_log: Literal["mongo", "local"] = Settings.event_log  # INSIGHTS_EVENT_LOG
    modules: Literal["trivial", "builtin"] = "trivial"  # bench.modules only, or the built-in modules only
    worker_concurrency: int = 2  # prefork processes of the Celery worker (worker_mode "prefork")
    env: dict[str, str] = field(default_factory=dict)  # more environment for every process (bench hooks)
    settings: Settings = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = self.logs / "data"
        self.settings = Settings(
            redis_url=self.servers.url(0),
            mongo_url=self.servers.mongo.url,
            data_dir=data,
            fs_root=data / "files",
            module_packages=("modules", "bench.modules") if self.modules == "trivial" else ("modules",),
            exclude_modules=BUILTIN_MODULES if self.modules == "trivial" else (),
            batch_size=self.batch_size,
            event_log=self.event_log,
            web_port=free_port(),
            # The load generator is one client: per-client quotas would measure themselves.
            rate_limit=1e6,
            rate_burst=10**6,
            max_runs=10**6,
        )

    @property
    def base_url(self) -> str:
        """Where the web app listens."""
        return f"http://127.0.0.1:{self.settings.web_port}"

    def commands(self) -> dict[str, list[str]]:
        """The command line of every process, by name."""
        queues = self.settings.queues.all()
        bind = f"127.0.0.1:{self.settings.web_port}"
        commands = {
            "web": COMMANDS.web(bind, workers=2, threads=WEB_MODES[self.web_mode]),
            **{f"batcher{i or ''}": COMMANDS.batcher() for i in range(self.batchers)},
        }
        if self.worker_mode == "prefork":
            commands["worker"] = COMMANDS.worker(queues, concurrency=self.worker_concurrency, name="bench-prefork@%h")
        else:
            for i in range(2):
                commands[f"worker{i}"] = COMMANDS.worker(queues, solo=True, name=f"bench-solo{i}@%h")
        return commands

    def start(self) -> Deployment:
        """Flush our Redis, start every process and wait until web answers, workers ping, batcher reads."""
        self.servers.client(0).flushdb()
        self.logs.mkdir(parents=True, exist_ok=True)
        env = child_env({**self.settings.to_env(), **self.env})
        for name, args in self.commands().items():
            self.processes[name] = start(args, env, self.logs / f"{name}.log")
        alive = list(self.processes.values())
        workers = sum(1 for n in self.processes if n.startswith("worker"))
        try:
            wait_until(self._web_ready, START_TIMEOUT, "the web app", alive)
            wait_until(self._batcher_ready, START_TIMEOUT, "the batcher", alive)
            wait_until(lambda: ping_workers(self.settings.broker) >= workers, START_TIMEOUT, "the workers", alive)
        except BaseException:
            self.stop()
            raise
        return self

    def _web_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/schema", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _batcher_ready(self) -> bool:
        try:
            return bool(self.servers.client(0).xinfo_consumers(Keys(self.settings.redis_prefix).intake_stream, GROUP))
        except redis.ResponseError:
            return False

    def handlers(self) -> list[str]:
        """Task names of the handlers the web app has loaded (from ``/schema``)."""
        import json

        with urllib.request.urlopen(self.base_url + "/schema", timeout=5) as answer:
            schema = json.load(answer)
        items = schema if isinstance(schema, list) else schema.get("functions", schema.get("items", []))
        return sorted(i["task"] for i in items if isinstance(i, dict) and i.get("class") == "handler")

    def pids(self) -> dict[str, int]:
        """Process ids by role (web: the gunicorn master, worker: each Celery main process)."""
        return {name: p.pid for name, p in self.processes.items()}

    def stop(self) -> None:
        """Stop the batcher first, then web and workers."""
        for name in sorted(self.processes, key=lambda n: n != "batcher"):
            stop(self.processes[name])
        self.processes.clear()


def ping_workers(broker: str) -> int:
    """How many Celery workers on ``broker`` answer a ping."""
    from celery import Celery

    register_kombu_serializer()  # ours answers in its own serializer
    app = Celery("bench-ping", broker=broker, set_as_current=False)
    app.conf.accept_content = ["json", SERIALIZER_NAME]
    try:
        return len(app.control.ping(timeout=0.5))
    except Exception:
        return 0
    finally:
        app.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants so far."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0
