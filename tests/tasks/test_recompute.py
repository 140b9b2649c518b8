"""Batch recomputation of a memoized query over a parameter space, with failures reported."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tasks.errors import ArgumentError
from tasks.ops.recompute import parameter_space, recompute
from tests.conftest import CLI, Pipeline


def test_recomputing_100_parameter_sets_reports_the_one_that_failed(
    insights: Insights, worker: Pipeline, client: FlaskClient
) -> None:
    report = recompute(insights, "square", ({"n": n} for n in range(100)), concurrency=10, progress=False)
    assert (report.total, report.succeeded) == (100, 99)
    assert report.failures == [({"n": 13}, "ValueError: 13 is unlucky")]
    assert "square: 99/100 recomputed, 1 failed" in report.summary()
    assert client.get("/query/square?n=42&_memo=cached").get_json() == 1764  # the cache is warm


def test_only_memoized_queries_are_recomputed_and_bad_sets_are_refused(insights: Insights, worker: Pipeline) -> None:
    with pytest.raises(ArgumentError, match="not memoized"):
        recompute(insights, "total", [{"values": [1]}], progress=False)
    with pytest.raises(ArgumentError, match="missing argument 'n'"):
        recompute(insights, "square", [{"m": 1}], progress=False)


def test_the_parameter_space_is_every_combination() -> None:
    assert list(parameter_space({"course": ["a", "b"], "user": ["u1", "u2", "u3"]})) == [
        {"course": c, "user": u} for c in ("a", "b") for u in ("u1", "u2", "u3")
    ]


@pytest.mark.slow  # command-line processes
def test_the_recompute_command_prints_a_summary_and_fails_on_failures(cli: CLI, worker: Pipeline, tmp_path) -> None:
    values = tmp_path / "n.txt"
    values.write_text("11\n12\n13\n")
    result = cli("recompute", "square", "--set", f"n=@{values}", "--no-progress", expect=1)
    assert "square: 2/3 recomputed, 1 failed" in result.stdout
    assert "failed {'n': '13'}: ValueError: 13 is unlucky" in result.stdout
    assert "--set takes NAME=V1,V2" in cli("recompute", "square", "--set", "n", expect=2).stderr
