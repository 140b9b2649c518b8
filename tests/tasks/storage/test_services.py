"""The original's get_replica_* helpers: another module's stores, read-only, inside a running function."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tasks import get_replica_cache, get_replica_database, get_replica_filesystem
from tasks.app import Insights
from tasks.errors import ReadOnlyError, RegistrationError
from tasks.storage.services import running_services


def running(insights: Insights) -> Any:
    """What a module's function runs inside (Insights._call does the same)."""
    return running_services(insights.services, insights.registry.module_named)


def test_the_helpers_read_another_modules_stores_by_module_or_package_name(insights: Insights) -> None:
    key, filename = uuid.uuid4().hex, f"replica-{uuid.uuid4().hex}.txt"
    insights.services.cache("testmodule").set(key, [1, 2])
    insights.services.mongodb("testmodule")["replica_test"].insert_one({"_id": key})
    with insights.services.fs("testmodule").open(filename, "w") as f:
        f.write("shared")

    with running(insights):
        for name in ("testmodule", "modules.testmodule"):
            assert get_replica_cache(name).get(key) == [1, 2]
            assert get_replica_database(name)["replica_test"].find_one({"_id": key}) == {"_id": key}
            with get_replica_filesystem(name).open(filename) as f:
                assert f.read() == "shared"


def test_writes_through_the_helpers_are_refused(insights: Insights) -> None:
    with running(insights):
        with pytest.raises(ReadOnlyError, match="cache of module 'testmodule'"):
            get_replica_cache("testmodule").set("k", 1)
        with pytest.raises(ReadOnlyError, match="database of module 'testmodule'"):
            get_replica_database("testmodule")["replica_test"].insert_one({})
        with pytest.raises(ReadOnlyError, match="file store of module 'testmodule'"):
            get_replica_filesystem("testmodule").open("x.txt", "w")


def test_an_unknown_module_is_refused_listing_the_loaded_ones(insights: Insights) -> None:
    with running(insights), pytest.raises(RegistrationError, match=r"no analytics module 'gradse' is loaded; .*grades"):
        get_replica_database("gradse")


def test_a_module_name_must_be_text(insights: Insights) -> None:
    with running(insights), pytest.raises(RegistrationError, match="takes a module name such as 'grades', got 3"):
        get_replica_cache(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("helper", [get_replica_database, get_replica_filesystem, get_replica_cache])
def test_the_helpers_work_only_inside_a_running_function(helper: Any) -> None:
    with pytest.raises(
        RegistrationError, match=rf"{helper.__name__}\(\) works inside a view, query, handler or cron job"
    ):
        helper("testmodule")
