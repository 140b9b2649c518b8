"""The Python client: local and remote backends, merged servers, policies, remote fallback of ``query``.

Every server here is real: werkzeug serving the web app over HTTP, the session's Celery
worker running the tasks, Redis and the Mongo-protocol server behind them.
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from config.settings import Settings
from tasks import query
from tasks.app import Insights, create_insights
from tasks.client import (
    Client,
    LocalBackend,
    MergedBackend,
    PolicyBackend,
    RemoteBackend,
    RemoteError,
)
from tasks.core.functions import UNKNOWN_DEFAULT, FunctionInfo
from tasks.core.policy import Policy
from tasks.ops.embedded import free_port
from tests.conftest import send, serving


@query()
def remote_user_count(query, user):
    """Counts a user's events through a query only another server has (loaded by the fallback test)."""
    return {"user": user, "count": query.djt_user_event_count(user)}


@contextmanager
def deployment(settings: Settings, **changes: Any) -> Iterator[Insights]:
    """Another Insights on the same Redis/Mongo (and session worker), with changed settings."""
    app = create_insights(dataclasses.replace(settings, **changes))
    try:
        yield app
    finally:
        app.services.close()


@dataclasses.dataclass(frozen=True)
class Users:
    """Two users of the test's own (no other test sends events about them)."""

    alice: str  # has 3 events
    bob: str  # has 1


@pytest.fixture
def users(client: FlaskClient) -> Users:
    """Two fresh users with known event counts: alice 3, bob 1."""
    tag = uuid.uuid4().hex[:8]
    users = Users(f"alice-{tag}", f"bob-{tag}")
    senders = [users.alice] * 3 + [users.bob]  # one id each: counted once even if re-sent
    send(client, [{"user": user, "event_type": "client-test", "id": str(uuid.uuid4())} for user in senders])
    return users


# Local ----------------------------------------------------------------------------------
def test_local_client_calls_with_positional_and_keyword_arguments(insights: Insights, users: Users) -> None:
    client = Client.local(insights)
    assert client.query.djt_user_event_count(users.alice) == 3
    assert client.query.djt_user_event_count(user=users.bob) == 1
    assert client.query.echo(greeting="hi", extra=1) == {"greeting": "hi", "params": {"extra": 1}}
    assert client.query.echo() == {"greeting": "hello", "params": {}}  # left-out default is the function's
    assert client.view.djt_fake_user_count() == "<html>Users: 2</html>"  # a view's raw result
    assert client.query["edx.djt_three_name"]() == "I have three names"
    with pytest.raises(TypeError, match="takes 1 positional"):
        client.query.djt_user_event_count("alice", "bob")
    with pytest.raises(TypeError, match="'user' twice"):
        client.query.djt_user_event_count("alice", user="bob")


def test_methods_have_signatures_docstrings_and_completion(insights: Insights) -> None:
    client = Client.local(insights)
    method = client.query.djt_user_event_count
    assert method.__name__ == "djt_user_event_count"
    assert method.__doc__ == "Number of events seen from one user since djt_clear_database."
    assert str(inspect.signature(method)) == "(user)"
    assert str(inspect.signature(client.query.echo)) == "(greeting='hello')"  # local: real defaults
    assert str(inspect.signature(client.query.slow_total)) == "(course, seconds='0.5', verbose='no')"
    names = dir(client.query)
    assert {"djt_user_event_count", "grades_array", "edx_djt_three_name"} <= set(names)
    assert "edx.djt_three_name" not in names and "edx.djt_three_name" in client.query  # item access only
    assert "djt_fake_user_count" in dir(client.view)
    with pytest.raises(AttributeError, match="did you mean djt_user_event_count"):
        _ = client.query.djt_user_event_cont


# Remote ---------------------------------------------------------------------------------
def test_remote_client_calls_queries_and_views(live_server: str, users: Users) -> None:
    client = Client.remote(live_server, timeout=30)
    assert client.query.djt_user_event_count(users.alice) == 3
    assert client.query.djt_user_event_count(user=users.bob) == 1
    assert client.view.djt_fake_user_count() == "<html>Users: 2</html>"  # text/html -> str
    assert client.query.grades_array("c1") == [[2, 3, 4], [5, 6, 7]]  # numpy -> JSON list
    assert client.query.echo(extra="x") == {"greeting": "hello", "params": {"extra": "x"}}
    assert client.query["edx.djt_three_name"]() == "I have three names"
    method = client.query.slow_total
    assert method.__doc__.startswith("Counts its own computations")
    signature = inspect.signature(method)
    assert list(signature.parameters) == ["course", "seconds", "verbose"]
    assert signature.parameters["course"].default is inspect.Parameter.empty
    assert signature.parameters["seconds"].default == "0.5"  # from /schema
    assert str(signature) == "(course, seconds='0.5', verbose='no')"
    info = FunctionInfo.from_schema({"name": "old", "class": "query", "parameters": ["n"], "required": []})
    assert info.signature().parameters["n"].default is UNKNOWN_DEFAULT  # a server whose /schema has no defaults


def test_remote_errors_carry_the_servers_message(live_server: str) -> None:
    backend = RemoteBackend(live_server)
    client = Client(backend)
    with pytest.raises(RemoteError) as missing:
        client.query.djt_user_event_count()
    assert missing.value.status == 400 and "missing argument 'user'" in missing.value.message
    with pytest.raises(RemoteError) as failed:
        client.view.broken_view()
    assert failed.value.status == 500 and "broken on purpose" in failed.value.message
    with pytest.raises(RemoteError) as unknown:
        backend.call("query", "no_such_query", {})  # straight to the server, past the schema
    assert unknown.value.status == 404 and "no_such_query" in unknown.value.message
    with pytest.raises(AttributeError, match="no query named 'no_such_query'"):
        _ = client.query.no_such_query  # the schema already says so: no request is made
    with pytest.raises(ConnectionError, match="cannot reach"):
        Client.remote(f"http://127.0.0.1:{free_port()}", timeout=2).query.anything  # noqa: B018


def test_remote_schema_is_read_once_until_refreshed(live_server: str) -> None:
    backend = RemoteBackend(live_server)
    first = backend.schema()
    assert backend.schema() is first
    backend.refresh()
    assert backend.schema() is not first and backend.schema() == first


def test_remote_token_on_an_auth_server(settings: Settings, worker: Any, users: Users) -> None:
    with deployment(settings, auth=True) as app, serving(app) as url:
        policy = Policy(allow=("schema", "query:djt_user_event_count"), locked={"user": users.alice})
        token = app.tokens.create(f"client-test-{free_port()}", policy)
        client = Client.remote(url, token=token)
        assert client.query.djt_user_event_count() == 3  # the server applies the token's lock
        assert client.query.djt_user_event_count(users.alice) == 3
        with pytest.raises(RemoteError) as other_user:
            client.query.djt_user_event_count(users.bob)
        assert other_user.value.status == 403 and "locked" in other_user.value.message
        with pytest.raises(RemoteError) as denied:
            client.query.djt_event_count()
        assert denied.value.status == 403 and "query:djt_event_count" in denied.value.message
        with pytest.raises(RemoteError) as anonymous:
            Client.remote(url).query.djt_user_event_count  # noqa: B018
        assert anonymous.value.status == 401
        with pytest.raises(RemoteError) as wrong:
            Client.remote(url, token="not-a-token").query.djt_user_event_count  # noqa: B018
        assert wrong.value.status == 401 and "unknown or revoked token" in wrong.value.message


# Merged ---------------------------------------------------------------------------------
def test_merged_servers_first_wins_and_union(settings: Settings, live_server: str, users: Users) -> None:
    with (
        deployment(settings, module_packages=("tests.sample_modules",), exclude_modules=("pipeline",)) as data,
        deployment(settings, module_packages=("modules", "modules.testmodule"), exclude_modules=()) as testmodule,
        serving(data) as data_url,
    ):
        remote_data = RemoteBackend(data_url)
        local_testmodule = LocalBackend(testmodule)
        remote_all = RemoteBackend(live_server)
        client = Client(MergedBackend([remote_data, local_testmodule, remote_all]))
        queries = set(dir(client.query))
        assert {"grades_array", "djt_user_event_count"} <= queries  # the union ...
        assert "delivered" in queries  # ... with what only the last server has (tests.sample_modules.pipeline)
        assert "djt_user_event_count" not in remote_data.functions("query")
        assert client.backend.owner("query", "grades_array") is remote_data
        assert client.backend.owner("query", "djt_user_event_count") is local_testmodule  # first wins
        assert client.backend.owner("query", "delivered") is remote_all
        assert client.query.grades_array("c") == [[1, 2, 3], [4, 5, 6]]
        assert client.query.djt_user_event_count(users.alice) == 3
        assert client.query.mean_grade("c") == 3.5  # the data server's module, run by the shared worker
        assert client.view.djt_fake_user_count() == "<html>Users: 2</html>"

        merged = Client.merged(Client(remote_data), Client.local(testmodule))
        union = {*remote_data.functions("query"), *local_testmodule.functions("query")}
        assert set(dir(merged.query)) == {n for n in union if n.isidentifier()}  # not edx.djt_three_name
        dead = MergedBackend([remote_data, RemoteBackend(f"http://127.0.0.1:{free_port()}", timeout=2)])
        assert dead.call("query", "grades_array", {"course": "c"}) == [[1, 2, 3], [4, 5, 6]]  # not asked
        with pytest.raises(ConnectionError):
            dead.functions("query")  # the union needs every server


# Policy ---------------------------------------------------------------------------------
def test_policy_denies_functions(insights: Insights, live_server: str) -> None:
    for base in (Client.local(insights), Client.remote(live_server)):
        client = base.restricted(allow=("query:djt_*", "view:*"), deny=("query:djt_clear_database",))
        assert "djt_clear_database" not in dir(client.query)
        assert "grades_array" not in dir(client.query)  # not allowed
        assert "djt_event_count" in dir(client.query) and "djt_fake_user_count" in dir(client.view)
        with pytest.raises(AttributeError):
            _ = client.query.djt_clear_database
        with pytest.raises(PermissionError, match="may not use query:djt_clear_database"):
            client.backend.call("query", "djt_clear_database", {})
    aliased = Client.local(insights).restricted(deny=("query:edx.*",))
    with pytest.raises(PermissionError):  # denied under one name: denied under every name
        aliased.backend.call("query", "djt_three_name", {})
    assert "djt_three_name" not in aliased.query


def test_policy_locks_parameters(insights: Insights, live_server: str, users: Users) -> None:
    for base in (Client.local(insights), Client.remote(live_server)):
        client = base.restricted(locked={"user": users.alice})
        assert isinstance(client.backend, PolicyBackend)
        assert client.query.djt_user_event_count() == 3  # the locked user's count
        assert client.query.djt_user_event_count(user=users.alice) == 3
        assert str(inspect.signature(client.query.djt_user_event_count)) == f"(user='{users.alice}')"
        with pytest.raises(PermissionError, match="'user' is locked"):
            client.query.djt_user_event_count(user=users.bob)
        with pytest.raises(PermissionError, match="'user' is locked"):
            client.query.djt_user_event_count(users.bob)  # positionally too
        assert client.query.djt_fake_user_count() == 2  # a global query does not get the locked user
        assert np.asarray(client.query.grades_array("c")).tolist() == [[1, 2, 3], [4, 5, 6]]  # lock dropped


# The injected query object falls back to remote servers ---------------------------------
def test_injected_query_falls_back_to_a_remote_server(settings: Settings, live_server: str, users: Users) -> None:
    with deployment(settings, module_packages=("tests.tasks.test_client",), exclude_modules=()) as app:
        assert app.remotes == []
        assert app.registry.names("query") == ["remote_user_count"]
        with pytest.raises(Exception, match="djt_user_event_count"):
            app.queries.remote_user_count(users.alice)  # not registered here, no remotes yet
        app.remotes.append(RemoteBackend(live_server))
        assert app.queries.djt_user_event_count(users.alice) == 3  # in-process caller, remote function
        assert app.queries.remote_user_count(users.bob) == {"user": users.bob, "count": 1}  # the injected query
        assert "djt_user_event_count" in dir(app.queries)
        assert inspect.signature(app.queries.djt_user_event_count).parameters["user"].default is inspect._empty
        with pytest.raises(Exception, match="no query named 'nowhere'"):
            app.queries.nowhere()
