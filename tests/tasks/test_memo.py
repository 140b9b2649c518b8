"""Memoized queries: cached by arguments, computed once under concurrency, modes, crash recovery."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from config.settings import Queues, Settings
from tasks.app import create_insights
from tasks.core.memo import Memo, MemoPolicy, code_version, memoize_query, split_mode
from tasks.errors import ArgumentError, CacheMiss, RegistrationError
from tasks.ops.embedded import EmbeddedRedis
from tasks.storage.keys import Keys
from tests.conftest import Pipeline, wait_for
from web.app import create_app


def finish(client: FlaskClient, url: str) -> dict[str, Any]:
    return wait_for(lambda: (b := client.get(url).get_json())["state"] in ("done", "failed") and b, what=url)


def test_two_concurrent_callers_of_a_slow_memoized_query_compute_once(client: FlaskClient) -> None:
    course = f"c-{uuid.uuid4().hex}"
    urls = [client.post("/run/query/slow_total", json={"course": course, "seconds": "1"}).get_json()["result"]]
    urls.append(client.post("/run/query/slow_total", json={"course": course, "seconds": "1"}).get_json()["result"])
    results = [finish(client, url)["result"] for url in urls]
    assert results == [{"course": course, "computation": 1}] * 2
    assert client.get(f"/query/computations?course={course}").get_json() == 1


def test_a_cached_result_is_answered_by_the_web_process_without_a_worker(
    client: FlaskClient, settings: Settings
) -> None:
    course = f"c-{uuid.uuid4().hex}"
    assert client.get(f"/query/slow_total?course={course}&seconds=0").get_json()["computation"] == 1
    no_workers = dataclasses.replace(settings, queues=Queues(queries="nobody-listens"), result_timeout=0.5)
    offline = create_app(create_insights(no_workers)).test_client()
    assert offline.get(f"/query/slow_total?course={course}&seconds=0").get_json()["computation"] == 1
    assert offline.get(f"/query/slow_total?course={course}&seconds=0&verbose=yes").status_code == 200  # ignored
    assert offline.get(f"/query/slow_total?course=other-{course}&seconds=0").status_code == 504


def test_refresh_cache_only_and_clear_modes(client: FlaskClient) -> None:
    course = f"c-{uuid.uuid4().hex}"
    url = f"/query/slow_total?course={course}&seconds=0"
    missing = client.get(f"{url}&_memo=cached")
    assert missing.status_code == 404 and "no cached result" in missing.get_json()["error"]
    assert client.get(url).get_json()["computation"] == 1
    assert client.get(f"{url}&_memo=cached").get_json()["computation"] == 1
    assert client.get(f"{url}&_memo=refresh").get_json()["computation"] == 2
    assert client.get(url).get_json()["computation"] == 2
    assert client.get(f"{url}&_memo=clear").status_code == 200
    assert client.get(f"{url}&_memo=cached").status_code == 404
    assert client.get(f"{url}&_memo=sometimes").status_code == 400
    assert client.get("/query/computations?course=x&_memo=cached").status_code == 400  # not memoized


@pytest.fixture
def memo(tmp_path: Any) -> Any:
    with EmbeddedRedis(tmp_path, persist=False) as server:
        yield Memo(redis_lib.Redis.from_url(server.url), Keys()), redis_lib.Redis.from_url(server.url)


def test_a_crashed_computation_releases_the_waiters_after_its_timeout(memo: Any) -> None:
    cache, client = memo
    policy = MemoPolicy(cache_time=60, timeout=0.4)
    key = cache.key("m", "q", {"a": 1}, policy)
    client.set(Keys.memo_lock(key), "a crashed worker", px=400)  # held by a computation that died
    holders: list[bytes | None] = []

    def recompute() -> str:
        holders.append(client.get(Keys.memo_lock(key)))
        return "recomputed"

    started = time.monotonic()
    assert cache.get_or_compute(key, policy, recompute) == "recomputed"
    assert time.monotonic() - started >= 0.3  # it waited for the dead computation's lock to expire ...
    [holder] = holders  # ... then took the lock itself and computed once (never gave up waiting)
    assert holder is not None and holder != b"a crashed worker"


def test_waiters_are_woken_by_the_result_not_by_polling(memo: Any) -> None:
    cache, client = memo
    # The computation's lock lasts an hour: a waiter not woken by the result's notice would
    # sleep until the lock expired (the only other way it looks again), far past any wait below.
    policy = MemoPolicy(cache_time=60, timeout=3600)
    key = cache.key("m", "q", {"a": 2}, policy)
    computing, finish, calls = threading.Event(), threading.Event(), []

    def slow() -> str:
        calls.append(1)
        computing.set()
        assert finish.wait(60)
        return "done"

    def subscribers() -> int:
        [(_, count)] = client.pubsub_numsub(f"{key}:done")
        return int(count)

    with ThreadPoolExecutor(4) as pool:
        try:
            first = pool.submit(cache.get_or_compute, key, policy, slow)
            assert computing.wait(60)
            others = [pool.submit(cache.get_or_compute, key, policy, slow) for _ in range(3)]
            wait_for(lambda: subscribers() == 4, what="the three waiters to subscribe to the result's notice")
            assert not any(f.done() for f in others)  # waiting while the result is computed
            finish.set()
            assert [f.result(60) for f in [first, *others]] == ["done"] * 4  # woken by the notice, not the lock
        finally:  # if the test failed: wake whoever still waits, so the pool can shut down
            finish.set()
            client.delete(Keys.memo_lock(key))
            client.publish(f"{key}:done", "1")
    assert len(calls) == 1


def test_options_and_modes_are_validated() -> None:
    with pytest.raises(RegistrationError, match="cache_time"):
        memoize_query(cache_time=0)
    with pytest.raises(RegistrationError, match="timeout"):
        memoize_query(timeout=-1)
    with pytest.raises(ArgumentError, match="_memo must be one of"):
        split_mode({"_memo": "never"})
    assert split_mode({"a": 1}) == ("use", {"a": 1})


def test_the_cache_only_mode_raises_cache_miss_and_never_computes(memo: Any) -> None:
    cache, _ = memo
    policy = MemoPolicy(cache_time=60, timeout=30)
    key = cache.key("m", "q", {"a": 3}, policy)
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "computed"

    with pytest.raises(CacheMiss, match="no cached result yet"):
        cache.get_or_compute(key, policy, compute, mode="cached")
    assert calls == []
    assert cache.get_or_compute(key, policy, compute) == "computed"
    assert cache.get_or_compute(key, policy, compute, mode="cached") == "computed"
    assert calls == [1]


def test_an_outside_refresh_of_a_fresh_result_serves_it_instead_of_recomputing(
    settings: Settings, worker: Pipeline
) -> None:
    app = create_insights(dataclasses.replace(settings, memo_min_refresh=60.0))
    client = create_app(app).test_client()
    url = f"/query/slow_total?course=refresh-{uuid.uuid4().hex[:8]}&seconds=0"
    first = client.get(url).get_json()["computation"]
    for _ in range(3):  # refreshes right after a computation add load, not freshness
        assert client.get(f"{url}&_memo=refresh").get_json()["computation"] == first
    app.services.close()


def test_a_run_with_memo_refresh_of_a_fresh_result_does_not_recompute(settings: Settings, worker: Pipeline) -> None:
    app = create_insights(dataclasses.replace(settings, memo_min_refresh=60.0))
    client = create_app(app).test_client()
    course = f"run-refresh-{uuid.uuid4().hex[:8]}"
    first = client.get(f"/query/slow_total?course={course}&seconds=0").get_json()["computation"]

    def finished(task: str) -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/result/{task}").get_json()
        return body if body.get("state") == "done" else None

    try:
        for _ in range(2):
            task = client.post(f"/run/query/slow_total?course={course}&seconds=0&_memo=refresh").get_json()["task"]
            body = wait_for(lambda t=task: finished(t), what="the run to finish")
            assert body["result"]["computation"] == first, body
    finally:
        app.services.close()


def _write_release(root: Any, package: str, answer: str) -> None:
    """One release of an analytics module ``fixme`` (the same module and query name in every release)."""
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "fixme.py").write_text(
        "from tasks import memoize_query, query\n\n\n"
        "@query()\n@memoize_query(cache_time=600)\n"
        f"def fixme_answer(course):\n    return {{'course': course, 'answer': {answer}}}\n"
    )


def test_a_fixed_memoized_query_does_not_serve_the_result_of_its_old_code(
    settings: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code is fixed and the app restarted (two apps on the same Redis): the old result is not served."""
    suffix = uuid.uuid4().hex[:8]
    _write_release(tmp_path, f"release_old_{suffix}", "41")
    _write_release(tmp_path, f"release_fixed_{suffix}", "6 * 7")
    monkeypatch.syspath_prepend(str(tmp_path))
    course = f"c-{suffix}"
    answers = []
    for package in (f"release_old_{suffix}", f"release_fixed_{suffix}", f"release_old_{suffix}"):
        app = create_insights(dataclasses.replace(settings, module_packages=(package,)))
        try:
            spec = app.registry.get("query", "fixme_answer")
            assert spec.module == "fixme"
            answers.append(app.call(spec, kwargs={"course": course})["answer"])
            assert app.call(spec, kwargs={"course": course, "_memo": "cached"})["answer"] == answers[-1]
        finally:
            app.services.close()
    assert answers == [41, 42, 41]  # each code version has its own cached result


def test_the_code_version_without_source_follows_the_bytecode() -> None:
    """Functions built by ``exec`` have no source file: their bytecode and constants (nested code too) count."""

    def build(body: str) -> Any:
        namespace: dict[str, Any] = {}
        exec(f"def q(x):\n    inner = lambda y: y + {body}\n    return inner(x)\n", namespace)
        return namespace["q"]

    assert code_version(build("1")) == code_version(build("1"))
    assert code_version(build("1")) != code_version(build("2"))
