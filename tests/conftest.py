"""Shared fixtures: real Redis and nx-27017 servers on free ports, a real Celery worker.

Everything here is real: the worker is a separate ``celery worker`` process consuming the
Redis broker, exactly as in production; tests wait on results with timeouts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from config.settings import ROOT, Settings
from tasks.app import Insights, create_insights
from tasks.embedded import EmbeddedMongo, EmbeddedRedis, free_port
from web.app import create_app

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


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
        module_packages=("modules", "tests.sample_modules"),
        result_timeout=20.0,
    )


@pytest.fixture(scope="session")
def insights(settings: Settings) -> Iterator[Insights]:
    """The application as the web process sees it (modules loaded, tasks bound)."""
    app = create_insights(settings)
    yield app
    app.services.close()


def start_worker(
    settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a real ``celery worker`` process consuming every queue of ``settings``."""
    env = {**os.environ, **settings.to_env(), **(extra_env or {})}
    command = [
        sys.executable, "-m", "celery", "-A", "tasks.worker", "worker",
        "-Q", ",".join(settings.queues.all()), "-c", "2", "-l", "INFO",
        "--without-mingle", "--without-gossip", "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Stop a worker: warm shutdown, then kill if it does not go."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def worker(
    insights: Insights, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """One real Celery worker process for the whole session, answering pings before tests start."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_worker(settings, log_path)

    def answers() -> Any:
        if process.poll() is not None:
            pytest.fail(f"the worker exited with {process.returncode}; log:\n{log_path.read_text()[-3000:]}")
        return insights.celery.control.ping(timeout=0.5)

    wait_for(answers, timeout=60, what="the Celery worker to answer a ping")
    yield process
    stop_worker(process)


@pytest.fixture
def client(insights: Insights, worker: subprocess.Popen[bytes]) -> FlaskClient:
    """A Flask test client of the web app, with a live worker behind it."""
    return create_app(insights).test_client()


@pytest.fixture(scope="session")
def live_server(insights: Insights, worker: subprocess.Popen[bytes]) -> Iterator[str]:
    """The web app served over real HTTP (threaded werkzeug) on a free port; yields its base URL."""
    server = make_server("127.0.0.1", free_port(), create_app(insights), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
