"""What the embedded nx-27017 gets right and wrong, for every pymongo operation the author guide
(docs/authoring.md, README) and the shipped modules use; and that a module's ``mongodb`` refuses
the wrong ones there (``EmbeddedServerLimit``) instead of succeeding silently.

Each case runs twice: on a plain pymongo collection (``raw``: a case nx-27017 gets wrong is an
expected failure, strict — if a new nx-27017 fixes it, the test says so) and on the guarded
collection a module gets (``guarded``: the right result, or ``EmbeddedServerLimit``).
A real MongoDB passes every ``raw`` case; it is not available to these tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pymongo
import pytest
from pymongo import InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from config.settings import Settings
from tasks.errors import EmbeddedServerLimit
from tasks.ops.embedded import EmbeddedMongo
from tasks.storage.embedded_mongo import EmbeddedDatabase, guarded, is_embedded
from tasks.storage.mongo import database_name
from tasks.storage.services import Services

T1 = datetime(2026, 1, 1)
T2 = datetime(2026, 6, 1)
MISSING = None  # no document before the update


@dataclass(frozen=True)
class Update:
    """``update_one({"_id": 1}, update, upsert)`` on ``before`` (a document with ``_id`` 1, or none) gives ``after``."""

    before: dict[str, Any] | None
    update: dict[str, Any]
    after: dict[str, Any]
    upsert: bool = False
    nx_wrong: str = ""  # what nx-27017 does instead; empty: it gets it right
    refused: bool = False  # guarded: refused although right here (wrong once the document exists)

    @property
    def guarded_refuses(self) -> bool:
        """Whether the guarded collection raises ``EmbeddedServerLimit`` for this case."""
        return bool(self.nx_wrong) or self.refused


UPDATES = {
    "set-missing": Update({}, {"$set": {"a": 1}}, {"a": 1}),
    "set-existing": Update({"a": 0}, {"$set": {"a": 1}}, {"a": 1}),
    "set-nested-missing": Update({}, {"$set": {"a.b": 1}}, {"a": {"b": 1}}),
    "set-datetime-existing": Update({"b": 1}, {"$set": {"a": T1}}, {"b": 1, "a": T1}, nx_wrong="stores text"),
    "set-datetime-upsert": Update(MISSING, {"$set": {"a": T1}}, {"a": T1}, upsert=True, refused=True),
    "inc-missing": Update({}, {"$inc": {"a": 2}}, {"a": 2}),
    "inc-existing": Update({"a": 1}, {"$inc": {"a": 2}}, {"a": 3}),
    "inc-upsert": Update(MISSING, {"$inc": {"a": 1}}, {"a": 1}, upsert=True),
    "addToSet-missing": Update({}, {"$addToSet": {"a": 1}}, {"a": [1]}, nx_wrong="does nothing"),
    "addToSet-existing": Update({"a": [1]}, {"$addToSet": {"a": 2}}, {"a": [1, 2]}),
    "addToSet-existing-duplicate": Update({"a": [1]}, {"$addToSet": {"a": 1}}, {"a": [1]}),
    "addToSet-upsert": Update(MISSING, {"$addToSet": {"a": 1}}, {"a": [1]}, upsert=True),
    "addToSet-each-missing": Update(
        {}, {"$addToSet": {"a": {"$each": [1, 2, 1]}}}, {"a": [1, 2]}, nx_wrong="does nothing"
    ),
    "addToSet-each-existing": Update({"a": [1]}, {"$addToSet": {"a": {"$each": [1, 2, 3]}}}, {"a": [1, 2, 3]}),
    "addToSet-each-upsert": Update(MISSING, {"$addToSet": {"a": {"$each": [1, 2, 1]}}}, {"a": [1, 2]}, upsert=True),
    "push-missing": Update({}, {"$push": {"a": 1}}, {"a": [1]}),
    "push-existing": Update({"a": [1]}, {"$push": {"a": 1}}, {"a": [1, 1]}),
    "push-each-missing": Update({}, {"$push": {"a": {"$each": [1, 2]}}}, {"a": [1, 2]}),
    "push-datetime-existing": Update({"b": 1}, {"$push": {"a": T1}}, {"b": 1, "a": [T1]}, nx_wrong="stores text"),
    "max-number-missing": Update({}, {"$max": {"a": 5}}, {"a": 5}),
    "max-number-lower": Update({"a": 1}, {"$max": {"a": 5}}, {"a": 5}),
    "max-number-higher": Update({"a": 9}, {"$max": {"a": 5}}, {"a": 9}),
    "min-number-missing": Update({}, {"$min": {"a": 5}}, {"a": 5}),
    "min-number-higher": Update({"a": 9}, {"$min": {"a": 5}}, {"a": 5}),
    "min-number-lower": Update({"a": 1}, {"$min": {"a": 5}}, {"a": 1}),
    "max-datetime-missing": Update({}, {"$max": {"a": T1}}, {"a": T1}, nx_wrong="stores text"),
    "max-datetime-later": Update({"a": T1}, {"$max": {"a": T2}}, {"a": T2}, nx_wrong="does nothing"),
    "min-datetime-earlier": Update({"a": T2}, {"$min": {"a": T1}}, {"a": T1}, nx_wrong="stores text"),
    "min-datetime-later": Update({"a": T1}, {"$min": {"a": T2}}, {"a": T1}, nx_wrong="stores the later one, as text"),
    "max-timestamp-number": Update({"a": T1.timestamp()}, {"$max": {"a": T2.timestamp()}}, {"a": T2.timestamp()}),
    "setOnInsert-upsert": Update(MISSING, {"$setOnInsert": {"a": 1}}, {"a": 1}, upsert=True),
    "setOnInsert-datetime-upsert": Update(
        MISSING, {"$setOnInsert": {"a": T1, "n": {"t": T1}}}, {"a": T1, "n": {"t": T1}}, upsert=True
    ),
    "setOnInsert-existing": Update({"a": 0}, {"$setOnInsert": {"a": 1}}, {"a": 0}, upsert=True),
    "setOnInsert-and-push-upsert": Update(
        MISSING, {"$setOnInsert": {"b": 1}, "$push": {"a": 1}}, {"b": 1, "a": [1]}, upsert=True
    ),
    "set-and-inc-upsert": Update(MISSING, {"$set": {"b": 1}, "$inc": {"a": 1}}, {"b": 1, "a": 1}, upsert=True),
    "unset-existing": Update({"a": 1, "b": 2}, {"$unset": {"a": ""}}, {"b": 2}),
    "unset-missing": Update({"b": 2}, {"$unset": {"a": ""}}, {"b": 2}),
}


@dataclass(frozen=True)
class Pipeline:
    """``aggregate(pipeline)`` over ``ROWS`` gives ``results``."""

    pipeline: list[dict[str, Any]]
    results: list[dict[str, Any]]
    nx_wrong: str = ""
    refused: bool = field(default=False)  # guarded: EmbeddedServerLimit (else the results)


ROWS = [{"_id": i, "g": i % 3, "v": i, "t": datetime(2026, 1, 1 + i), "tags": [i, i + 1]} for i in range(6)]
PIPELINES = {
    "match-group-sum-sort": Pipeline(
        [
            {"$match": {"v": {"$gte": 1}}},
            {"$group": {"_id": "$g", "n": {"$sum": 1}, "s": {"$sum": "$v"}}},
            {"$sort": {"_id": 1}},
        ],
        [{"_id": 0, "n": 1, "s": 3}, {"_id": 1, "n": 2, "s": 5}, {"_id": 2, "n": 2, "s": 7}],
    ),
    "group-max-number": Pipeline(
        [{"$group": {"_id": "$g", "m": {"$max": "$v"}}}, {"$sort": {"_id": 1}}],
        [{"_id": 0, "m": 3}, {"_id": 1, "m": 4}, {"_id": 2, "m": 5}],
    ),
    "group-addToSet": Pipeline(
        [{"$group": {"_id": None, "m": {"$addToSet": "$g"}}}, {"$project": {"_id": 0, "n": {"$size": "$m"}}}],
        [{"n": 3}],
    ),
    "group-max-datetime": Pipeline(
        [{"$group": {"_id": "$g", "m": {"$max": "$t"}}}, {"$sort": {"_id": 1}}],
        [
            {"_id": 0, "m": datetime(2026, 1, 4)},
            {"_id": 1, "m": datetime(2026, 1, 5)},
            {"_id": 2, "m": datetime(2026, 1, 6)},
        ],
        nx_wrong="returns text",
        refused=True,
    ),
    "group-min-datetime": Pipeline(
        [{"$group": {"_id": None, "m": {"$min": "$t"}}}],
        [{"_id": None, "m": datetime(2026, 1, 1)}],
        nx_wrong="returns text",
        refused=True,
    ),
    "sort-first-datetime": Pipeline(
        [{"$sort": {"t": -1}}, {"$group": {"_id": None, "m": {"$first": "$t"}}}],
        [{"_id": None, "m": datetime(2026, 1, 6)}],
    ),
    "match-datetime": Pipeline(  # right, but refused with the next: the guard refuses datetimes in pipelines
        [{"$match": {"t": {"$gt": datetime(2026, 1, 4)}}}, {"$project": {"_id": 0, "v": 1}}],
        [{"v": 4}, {"v": 5}],
        refused=True,
    ),
    "match-datetime-count": Pipeline(
        [{"$match": {"t": {"$gt": datetime(2026, 1, 4)}}}, {"$count": "n"}],
        [{"n": 2}],
        nx_wrong="counts every row",
        refused=True,
    ),
    "project-sort-limit": Pipeline(
        [{"$project": {"_id": 0, "v": 1}}, {"$sort": {"v": -1}}, {"$limit": 2}], [{"v": 5}, {"v": 4}]
    ),
    "unwind": Pipeline(
        [{"$match": {"v": {"$lt": 2}}}, {"$unwind": "$tags"}, {"$project": {"_id": 0, "tags": 1}}],
        [{"tags": 0}, {"tags": 1}, {"tags": 1}, {"tags": 2}],
    ),
}


@pytest.fixture
def database(mongo_server: EmbeddedMongo) -> Iterator[Database[dict[str, Any]]]:
    """A database of the test's own on the embedded nx-27017, dropped afterwards."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.url)
    name = f"compat_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(params=["raw", "guarded"])
def collection(request: pytest.FixtureRequest, database: Database[dict[str, Any]]) -> Collection[dict[str, Any]]:
    """The test's collection: plain pymongo (``raw``) or as a module's ``mongodb`` gets it (``guarded``)."""
    return (database if request.param == "raw" else guarded(database))["c"]


def is_guarded(collection: Collection[dict[str, Any]]) -> bool:
    """Whether ``collection`` came from a guarded database."""
    return isinstance(collection.database, EmbeddedDatabase)


def check(collection: Collection[dict[str, Any]], got: Any, want: Any, wrong: str) -> None:
    """``got == want``; on a raw collection a case nx-27017 gets wrong is an expected failure, and one
    it now gets right fails (drop its ``nx_wrong``)."""
    if wrong and not is_guarded(collection):
        assert got != want, f"nx-27017 now gets this right (it used to: {wrong}): drop the case's nx_wrong"
        pytest.xfail(f"nx-27017 {wrong}: {got!r}")
    assert got == want


@pytest.mark.parametrize("case", UPDATES.values(), ids=UPDATES.keys())
def test_update_one(collection: Collection[dict[str, Any]], case: Update) -> None:
    if case.before is not None:
        collection.insert_one({"_id": 1, **case.before})
    if is_guarded(collection) and case.guarded_refuses:
        with pytest.raises(EmbeddedServerLimit, match=r"nx-27017.*Portable form"):
            collection.update_one({"_id": 1}, case.update, upsert=case.upsert)
        return
    collection.update_one({"_id": 1}, case.update, upsert=case.upsert)
    check(collection, collection.find_one({"_id": 1}), {"_id": 1, **case.after}, case.nx_wrong)


@pytest.mark.parametrize("case", PIPELINES.values(), ids=PIPELINES.keys())
def test_aggregate(collection: Collection[dict[str, Any]], case: Pipeline) -> None:
    collection.insert_many(ROWS)
    if is_guarded(collection) and case.refused:
        with pytest.raises(EmbeddedServerLimit, match=r"nx-27017.*Portable form"):
            list(collection.aggregate(case.pipeline))
        return
    check(collection, list(collection.aggregate(case.pipeline)), case.results, case.nx_wrong)


def test_bulk_write_insert_and_update(collection: Collection[dict[str, Any]]) -> None:
    """``bulk_write`` of ``InsertOne`` and ``UpdateOne`` (with upserts), unordered, as the shipped handlers do."""
    result = collection.bulk_write(
        [
            InsertOne({"_id": 1, "a": 1}),
            UpdateOne({"_id": 1}, {"$inc": {"a": 1}}),
            UpdateOne({"_id": 2}, {"$setOnInsert": {"a": 1, "t": T1}}, upsert=True),
            UpdateOne({"_id": 1}, {"$setOnInsert": {"a": 9}}, upsert=True),
        ],
        ordered=False,
    )
    assert (result.inserted_count, result.matched_count, result.upserted_count) == (1, 2, 1)
    assert list(collection.find().sort("_id", 1)) == [{"_id": 1, "a": 2}, {"_id": 2, "a": 1, "t": T1}]


def test_find_sort_limit_projection_count(collection: Collection[dict[str, Any]]) -> None:
    """``find`` (filter, on datetimes too; sort, limit, projection), ``find_one``, ``count_documents``, ``distinct``."""
    collection.insert_many(ROWS)
    assert list(collection.find({"g": {"$in": [0, 1]}}, {"_id": 0, "v": 1}).sort("v", -1).limit(3)) == [
        {"v": 4},
        {"v": 3},
        {"v": 1},
    ]
    assert [row["v"] for row in collection.find({"t": {"$gte": datetime(2026, 1, 5)}})] == [4, 5]
    assert [row["v"] for row in collection.find().sort("t", -1).limit(2)] == [5, 4]
    assert collection.find_one({}, sort=[("t", -1)]) == ROWS[-1]
    assert collection.count_documents({"g": 1}) == 2
    assert sorted(collection.distinct("g")) == [0, 1, 2]


def test_bulk_write_refuses_before_writing(database: Database[dict[str, Any]]) -> None:
    """A refused update in a ``bulk_write`` refuses the whole batch before anything is written."""
    collection = guarded(database)["c"]
    collection.insert_one({"_id": 1})
    with pytest.raises(EmbeddedServerLimit, match=r"bulk_write\(UpdateOne\) with \$addToSet on 'a'"):
        collection.bulk_write([InsertOne({"_id": 2}), UpdateOne({"_id": 1}, {"$addToSet": {"a": 1}})])
    assert collection.count_documents({}) == 1


def test_addtoset_portable_form(database: Database[dict[str, Any]]) -> None:
    """The portable form the error gives: create the missing array, then ``$addToSet`` (guarded: accepted)."""
    collection = guarded(database)["c"]
    collection.insert_one({"_id": 1, "b": 1})
    for value in (5, 6, 5):
        collection.update_one({"_id": 1, "a": {"$exists": False}}, {"$set": {"a": []}})
        collection.update_one({"_id": 1}, {"$addToSet": {"a": value}})
    assert collection.find_one({"_id": 1}) == {"_id": 1, "b": 1, "a": [5, 6]}


def test_max_datetime_portable_form(database: Database[dict[str, Any]]) -> None:
    """The portable forms for times: ``$setOnInsert`` per event, ``$max`` on a number, latest by ``find``."""
    collection = guarded(database)["c"]
    for key, when in (("e1", T2), ("e2", T1), ("e1", T1)):
        collection.update_one({"_id": key}, {"$setOnInsert": {"user": "ada", "t": when}}, upsert=True)
        collection.database["latest"].update_one({"_id": "ada"}, {"$max": {"t": when.timestamp()}}, upsert=True)
    latest = collection.find({"user": "ada"}).sort("t", -1).limit(1).next()
    assert latest["t"] == T2
    assert collection.database["latest"].find_one({"_id": "ada"}) == {"_id": "ada", "t": T2.timestamp()}


def test_module_mongodb_is_guarded_on_the_embedded_server(settings: Settings) -> None:
    """A module's injected ``mongodb`` on nx-27017 refuses the silent failures; the framework's own
    handle (GridFS file stores) stays plain pymongo."""
    services = Services(settings)
    try:
        mongodb = services.mongodb("compat")
        records = mongodb.records  # attribute access, as pymongo allows
        records.insert_one({"_id": "ada"})
        with pytest.raises(EmbeddedServerLimit, match=r"\$addToSet on 'courses'.*nx-27017"):
            records.update_one({"_id": "ada"}, {"$addToSet": {"courses": "demo-101"}})
        with pytest.raises(EmbeddedServerLimit, match=r"datetime under \$max"):
            mongodb.get_collection("records").update_one({"_id": "ada"}, {"$max": {"last": T1}})
        with pytest.raises(EmbeddedServerLimit, match=r"datetime under \$set"):
            records.with_options().update_many({}, {"$set": {"last": T1}})
        assert records.find_one({"_id": "ada"}) == {"_id": "ada"}  # nothing written
        assert is_embedded(mongodb) and isinstance(mongodb, EmbeddedDatabase)
        assert not isinstance(services.database("compat"), EmbeddedDatabase)
    finally:
        services.mongo.drop_database(database_name(settings.mongo_db_prefix, "compat"))
        services.close()
