"""A module's database and read-only views of it, on the tests' real nx-27017 server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo.database import Database

from tasks.errors import ReadOnlyError
from tasks.ops.embedded import EmbeddedMongo
from tasks.storage.mongo import ReadOnlyDatabase, database_name


@pytest.fixture
def database(mongo_server: EmbeddedMongo) -> Iterator[Database[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.url)
    database = client[database_name("insights_", f"module_{uuid.uuid4().hex[:12]}")]
    database["grades"].insert_many([{"_id": n, "user": f"u{n}", "score": n * 10} for n in range(3)])
    yield database
    client.drop_database(database.name)
    client.close()


def test_module_database_names_are_portable() -> None:
    assert database_name("insights_", "my.module x") == "insights_my_module_x"
    assert len(database_name("insights_", "m" * 100)) == 63


def test_a_read_only_database_reads_like_pymongo(database: Database[dict[str, Any]]) -> None:
    replica = ReadOnlyDatabase(database, "grading")

    assert replica.name == database.name
    assert "grades" in replica.list_collection_names()
    assert replica["grades"].find_one({"_id": 1}) == {"_id": 1, "user": "u1", "score": 10}
    assert [d["_id"] for d in replica.grades.find({}, sort=[("_id", 1)])] == [0, 1, 2]
    assert replica.get_collection("grades").count_documents({"score": {"$gte": 10}}) == 2
    assert sorted(replica["grades"].distinct("user")) == ["u0", "u1", "u2"]
    assert list(replica["grades"].aggregate([{"$match": {"_id": 2}}])) == [{"_id": 2, "user": "u2", "score": 20}]
    assert replica["grades"].name == "grades"


@pytest.mark.parametrize(
    ("write", "operation"),
    [
        (lambda db: db["grades"].insert_one({"_id": 9}), r"grades.insert_one\(\)"),
        (lambda db: db["grades"].update_many({}, {"$set": {"score": 0}}), r"grades.update_many\(\)"),
        (lambda db: db["grades"].delete_one({"_id": 0}), r"grades.delete_one\(\)"),
        (lambda db: db.grades.replace_one({"_id": 0}, {}), r"grades.replace_one\(\)"),
        (lambda db: db["grades"].find_one_and_update({}, {"$set": {"x": 1}}), r"find_one_and_update\(\)"),
        (lambda db: db["grades"].bulk_write([]), r"grades.bulk_write\(\)"),
        (lambda db: db["grades"].drop(), r"grades.drop\(\)"),
        (lambda db: db["grades"].create_index("user"), r"grades.create_index\(\)"),
        (lambda db: db["grades"].with_options(), r"grades.with_options\(\)"),
        (lambda db: db["grades"].aggregate([{"$match": {}}, {"$out": "copy"}]), r"aggregate\(\) with \$out or \$merge"),
        (lambda db: db["grades"].aggregate([{"$merge": {"into": "copy"}}]), r"aggregate\(\) with \$out or \$merge"),
        (lambda db: db.drop_collection("grades"), r"drop_collection\(\)"),
        (lambda db: db.command("dropDatabase"), r"command\(\)"),
        (lambda db: db.create_collection("new"), r"create_collection\(\)"),
    ],
)
def test_a_read_only_database_refuses_every_write_naming_the_module(
    database: Database[dict[str, Any]], write: Any, operation: str
) -> None:
    with pytest.raises(
        ReadOnlyError, match=operation + r" refused: .*read-only view of the database of module 'grading'"
    ):
        write(ReadOnlyDatabase(database, "grading"))

    assert database["grades"].count_documents({}) == 3
    assert sorted(database.list_collection_names()) == ["grades"]
