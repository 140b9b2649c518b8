"""Shared fixtures: real Redis and nx-27017 servers on free ports, a real Celery worker.

Everything here is real: the worker is a separate ``celery worker`` process consuming the
Redis broker, exactly as in production; tests wait on results with timeouts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pymongo
import pytest
import redis
from flask.testing import FlaskClient
from pymongo.database import Database
from werkzeug.serving import make_server

from config.processes import Commands
from config.queues import shard_queues
from config.settings import ROOT, Queues, Settings
from tasks.app import Insights, create_insights
from tasks.core.policy import Policy
from tasks.core.tokens import TokenStore
from tasks.ops.embedded import EmbeddedMongo, EmbeddedRedis, free_port
from tasks.pipeline.stream import GROUP
from web.app import create_app

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns a truthy value; fail the test after ``timeout`` seconds.

    The timeout is generous (a loaded machine is slow, not wrong): a wait ends as soon as the
    probe holds, and it is probed at least every 20 ms, so a test does not idle after it."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def wait_handled(client: FlaskClient, receipt: str) -> dict[str, Any]:
    """Wait until every handler has run on the events of a receipt; returns the receipt's state."""

    def done() -> Any:
        state = client.get(f"/receipt/{receipt}").get_json()
        return state if state["state"] == "done" else None

    return wait_for(done, what=f"the events of receipt {receipt} to be handled")


def send(client: FlaskClient, events: Any, **kwargs: Any) -> dict[str, Any]:
    """POST events (any JSON value, or a ready body) and wait until they are handled."""
    body = events if isinstance(events, (str, bytes)) else json.dumps(events)
    response = client.post("/event", data=body, **kwargs)
    assert response.status_code == 202, response.get_json()
    return wait_handled(client, response.get_json()["receipt"])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A Redis server of the tests' own, on a free port."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMongo]:
    """An nx-27017 MongoDB wire-protocol server of the tests' own, on a free port."""
    with EmbeddedMongo(tmp_path_factory.mktemp("mongo")) as server:
        yield server


@pytest.fixture(scope="session")
def settings(
    redis_server: EmbeddedRedis, mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings pointing at the tests' own servers and folders."""
    data_dir = tmp_path_factory.mktemp("data")
    return Settings(
        redis_url=redis_server.url,
        mongo_url=mongo_server.url,
        data_dir=data_dir,
        fs_root=data_dir / "files",
        module_packages=("modules", "modules.testmodule", "tests.sample_modules"),  # the test module is opt-in
        result_timeout=20.0,
        handler_backoff=0.02,
        visibility_timeout=6,
        redrive_after=10.0,  # lost batch tasks sent again soon (tests/faults)
        shards=4,
        # Quotas out of the way of tests that call fast; tests/web/test_limits.py sets tight ones.
        rate_limit=10_000.0,
        rate_burst=10_000,
        max_runs=10_000,
        memo_min_refresh=0.001,
        lease_ttl=3.0,  # a killed batcher or shard worker's standby takes over within seconds
    )


@pytest.fixture
def own_database(settings: Settings) -> Iterator[Database[Any]]:
    """A MongoDB database of the test's own on the session's nx-27017, dropped afterwards: for
    counts and orders that no other test's events may reach (the pipeline's databases are shared)."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.mongo)
    name = f"own_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(scope="session")
def insights(settings: Settings) -> Iterator[Insights]:
    """The application as the web process sees it (modules loaded, tasks bound)."""
    app = create_insights(settings)
    yield app
    app.services.close()


# How the tests start processes (config/processes.py): workers skip mingle and gossip to start fast.
COMMANDS = Commands(quiet=True)


def start_process(
    settings: Settings,
    command: list[str],
    log_path: Path,
    *,
    cwd: Path = ROOT,
    launcher: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` (a ``COMMANDS`` line) with ``settings`` in its environment, logging to
    ``log_path``, in its own session (a test may SIGKILL its process group).

    ``cwd``: its working directory; ``launcher``: a prefix that execs the command in place
    (e.g. ``ip netns exec NAME``: the process id stays the command's); ``env``: more variables."""
    environment = {**os.environ, **(env or {}), **settings.to_env()}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*launcher, *command], cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def start_worker(
    settings: Settings, log_path: Path, queues: list[str] | None = None, solo: bool = False
) -> subprocess.Popen[bytes]:  # in its own process group: a test may SIGKILL the whole worker
    """Start a real ``celery worker`` process (every kind queue by default; ``solo`` for shard queues)."""
    name = f"test-{time.monotonic_ns()}@%h"
    if solo:
        command = COMMANDS.shard_worker(queues or settings.queues.all(), name=name)
    else:
        command = COMMANDS.worker(queues or settings.queues.all(), concurrency=2, name=name)
    return start_process(settings, command, log_path)


def stop_process(*processes: subprocess.Popen[bytes]) -> None:
    """Stop workers or a batcher: SIGTERM (warm shutdown) to all of them at once, then SIGKILL
    whichever has not gone after 20 s."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + 20
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Pipeline:
    """Real processes behind a deployment: a prefork worker on the kind queues, two solo
    workers sharing the shard queues (shards in parallel, each in order), and the batcher."""

    def __init__(self, insights: Insights, logs: Path) -> None:
        self.insights = insights
        self.settings = insights.settings
        self.logs = logs
        self.workers: list[subprocess.Popen[bytes]] = []
        self.batcher: subprocess.Popen[bytes] | None = None

    def start(self) -> Pipeline:
        """Start every process and wait until the workers answer pings and the batcher reads."""
        shards = shard_queues(self.settings.queues, self.settings.shards)
        self.add_worker()
        self.add_worker(shards[0::2], solo=True)
        self.add_worker(shards[1::2], solo=True)
        self.batcher = start_process(self.settings, COMMANDS.batcher(), self.logs / "batcher.log")
        self.wait_for_workers()
        wait_for(lambda: self._consumers() > 0 or self.batcher.poll() is not None, what="the batcher to start")
        assert self.batcher.poll() is None, (self.logs / "batcher.log").read_text()[-3000:]
        return self

    def add_worker(self, queues: list[str] | None = None, solo: bool = False) -> subprocess.Popen[bytes]:
        """Start one more worker (not waiting for it): by default on every kind queue and every queue
        a module names for its functions (``queue=``, the original's ``source_queue``)."""
        log = self.logs / f"worker-{len(self.workers)}.log"
        if queues is None:
            named = {self.insights.queue_of(spec) for spec in self.insights.registry if spec.queue}
            queues = sorted(set(self.settings.queues.all()) | named)
        process = start_worker(self.settings, log, queues, solo)
        self.workers.append(process)
        return process

    def wait_for_workers(self) -> None:
        """Wait until every live worker answers a ping; fail at once if one died."""

        def answers() -> bool:
            dead = [w.args for w in self.workers if w.poll() not in (None, -9)]
            if dead:
                pytest.fail(f"a worker exited early: {dead}; logs in {self.logs}")
            alive = [w for w in self.workers if w.poll() is None]
            return len(self.insights.celery.control.ping(timeout=0.5)) >= len(alive)

        wait_for(answers, timeout=60, what="the workers to answer a ping")

    def _consumers(self) -> int:
        try:
            return len(self.insights.services.redis.xinfo_consumers(self.insights.intake.stream, GROUP))
        except redis.ResponseError:
            return 0

    def stop(self) -> None:
        """Stop the batcher and the workers, side by side (what the batcher still dispatches
        stays queued in the broker)."""
        stop_process(*(p for p in [self.batcher, *self.workers] if p is not None and p.poll() is None))


@pytest.fixture(scope="session")
def worker(insights: Insights, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The session's pipeline processes (workers and batcher), shared by every test."""
    pipeline = Pipeline(insights, tmp_path_factory.mktemp("processes")).start()
    yield pipeline
    pipeline.stop()


@pytest.fixture
def client(insights: Insights, worker: Pipeline) -> FlaskClient:
    """A Flask test client of the web app, with a live worker behind it."""
    return create_app(insights).test_client()


CLI = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(settings: Settings) -> CLI:
    """Run ``python -m tasks ARGS`` against the test deployment and check its exit code."""

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "tasks", *args],
            cwd=ROOT,
            env={**os.environ, **settings.to_env()},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == expect, result.stderr[-3000:]
        return result

    return run


@contextlib.contextmanager
def serving_wsgi(wsgi: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """A WSGI app served over real HTTP (threaded werkzeug) on a free port; yields its base URL
    (naming the server ``host``)."""
    server = make_server("127.0.0.1", free_port(), wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def serving(app: Insights) -> contextlib.AbstractContextManager[str]:
    """The web app of ``app`` served over real HTTP; yields its base URL."""
    return serving_wsgi(create_app(app))


@pytest.fixture(scope="session")
def live_server(insights: Insights, worker: Pipeline) -> Iterator[str]:
    """The session's web app served over real HTTP; yields its base URL."""
    with serving(insights) as url:
        yield url


# Authentication on ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def secured(settings: Settings, worker: Pipeline) -> Iterator[Insights]:
    """A deployment with INSIGHTS_AUTH=on, served by the session's worker."""
    app = create_insights(dataclasses.replace(settings, auth=True))
    yield app
    app.services.close()


@pytest.fixture
def web(secured: Insights) -> FlaskClient:
    """A client of the auth-on web app that presents no token."""
    return create_app(secured).test_client()


@pytest.fixture
def store(secured: Insights) -> TokenStore:
    """The token store of the auth-on deployment."""
    return secured.tokens


def new_token(store: TokenStore, *allow: str, deny: tuple[str, ...] = (), **locked: str) -> str:
    """A fresh token (unique name) with this policy."""
    return store.create(f"test-{uuid.uuid4().hex[:12]}", Policy(allow, deny, locked))


def as_token(web: FlaskClient, token: str) -> FlaskClient:
    """A client of the same app sending ``Authorization: Bearer <token>`` on every request."""
    client = web.application.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def unattended(settings: Settings, tmp_path: Path) -> Iterator[Insights]:
    """A deployment with a prefix and queues of its own that no batcher or worker reads."""
    tag = uuid.uuid4().hex[:8]
    queues = Queues(*(f"{name}-{tag}" for name in ("views", "queries", "events", "reports", "batch")))
    own = dataclasses.replace(
        settings, redis_prefix=f"unattended{tag}:", queues=queues, data_dir=tmp_path, fs_root=tmp_path / "files"
    )
    app = create_insights(own)
    yield app
    client = app.services.redis
    for key in client.scan_iter(f"{own.redis_prefix}*"):
        client.delete(key)
    client.delete(*queues.all(), *shard_queues(queues, own.shards))
    app.services.close()
