"""Findings of the attack review of the merged fixes: each test FAILS today and shows one problem.

Every test drives the real pipeline (the conftest's Redis, nx-27017, Celery worker and batcher).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.conflicts import STREAM as CONFLICTS
from tests.conftest import Pipeline, as_token, new_token, send, wait_for
from web.app import create_app
from web.auth import Policy, TokenStore


@pytest.fixture(scope="module")
def strict(settings: Settings, worker: Pipeline) -> Iterator[Insights]:
    """Auth on with tight quotas: 2 requests/s in bursts of 3."""
    app = create_insights(dataclasses.replace(settings, auth=True, rate_limit=2.0, rate_burst=3))
    yield app
    app.services.close()


# 7. The rate counts requests, not work: one /chain request of 20 groups of 20 is 400 tasks
#    (8,000 tasks/s per client at the default 20/s). Here: a client allowed bursts of 3
#    requests starts 40 tasks with one.
def test_a_chain_counts_the_tasks_it_starts_against_the_clients_rate(strict: Insights) -> None:
    client = as_token(create_app(strict).test_client(), new_token(TokenStore(strict.services.redis), "query:*"))
    steps = [{"group": [{"query": "djt_fake_user_count"}] * 20}, {"group": [{"query": "djt_readfile"}] * 20}]
    response = client.post("/chain", json={"steps": steps})
    assert response.status_code == 429, f"{response.status_code}: 40 tasks ran for a client allowed bursts of 3"
