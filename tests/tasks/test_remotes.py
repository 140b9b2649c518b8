"""Remote servers from configuration: ``INSIGHTS_REMOTES`` gives a deployment's workers the servers
whose queries and views the injected ``query``/``view`` objects fall back to.

Two real stacks (a web app served over HTTP, a Celery worker process each; their own queues, keys
and modules): A's query calls a query registered only on B, which has authentication on.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Queues, Remote, Settings
from tasks.app import Insights, create_insights
from tasks.client import Client
from tasks.core.policy import Policy
from tests.conftest import COMMANDS, serving, start_process, stop_process

pytestmark = pytest.mark.slow


def stack_settings(settings: Settings, tmp_path: Path, name: str, **changes: object) -> Settings:
    """Settings of one stack: queues, Redis keys, folders and a test module of its own."""
    tag = f"{name}{uuid.uuid4().hex[:6]}"
    return dataclasses.replace(
        settings,
        redis_prefix=f"{tag}:",
        queues=Queues(*(f"{queue}-{tag}" for queue in ("views", "queries", "events", "reports", "batch"))),
        module_packages=("modules", "tests.remote_modules"),
        exclude_modules=tuple({"caller", "callee"} - {name}),
        data_dir=tmp_path / name,
        fs_root=tmp_path / name / "files",
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def server_b(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Stack B (auth on, the callee module): its URL and a token for its callee query."""
    own = stack_settings(settings, tmp_path, "callee", auth=True)
    app = create_insights(own)
    token = app.tokens.create(f"a-{uuid.uuid4().hex[:6]}", Policy(("query:callee_*", "schema"), (), {}))
    worker = start_process(own, COMMANDS.worker(own.queues.all(), concurrency=1, name="b@%h"), tmp_path / "b.log")
    try:
        with serving(app) as url:
            yield url, token
    finally:
        stop_process(worker)
        app.services.close()


def test_a_query_on_stack_a_calls_a_query_registered_only_on_stack_b(
    settings: Settings, server_b: tuple[str, str], tmp_path: Path
) -> None:
    url_b, token = server_b
    own = stack_settings(settings, tmp_path, "caller", remotes=(Remote(url_b, token),))
    assert own.to_env()["INSIGHTS_REMOTES"] == f"{url_b} {token}"  # what A's worker process reads
    app: Insights = create_insights(own)
    worker = start_process(own, COMMANDS.worker(own.queues.all(), concurrency=1, name="a@%h"), tmp_path / "a.log")
    try:
        with (
            serving(app) as url_a,
            urllib.request.urlopen(f"{url_a}/query/caller_square_plus_one?n=7", timeout=60) as answer,
        ):
            assert json.load(answer) == {"value": 50, "from": "B"}
        assert "callee_square" not in app.registry.names("query")
        assert Client.local(app).query.callee_square(n=3) == {"square": 9, "server": "B"}
        assert token not in (tmp_path / "a.log").read_text() + repr(app.remotes) + repr(own)
    finally:
        stop_process(worker)
        app.services.close()
