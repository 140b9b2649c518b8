"""``mongodb``: one database per analytics module on the configured MongoDB; read-only views of them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.collection import Collection
from pymongo.command_cursor import CommandCursor
from pymongo.database import Database

from tasks.errors import ReadOnlyError

MAX_DB_NAME = 63
READ_METHODS = frozenset(
    {
        "find",
        "find_one",
        "find_raw_batches",
        "count_documents",
        "estimated_document_count",
        "distinct",
        "list_indexes",
        "index_information",
        "options",
        "name",
        "full_name",
    }
)
WRITING_STAGES = ("$out", "$merge")


def database_name(prefix: str, module: str) -> str:
    """The database name that belongs to ``module`` (portable: no '.', '/', spaces; ≤ 63 bytes)."""
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", f"{prefix}{module}")
    return name[:MAX_DB_NAME]


def event_log_database(prefix: str) -> str:
    """The database of the event log (``tasks.pipeline.mongo_log``): ``<prefix>-eventlog``, which no
    module's database can be (module names are Python identifiers: no ``-``)."""
    return database_name(prefix, "-eventlog")


class ReadOnlyDatabase:
    """Another module's database for reading: its collections as ``ReadOnlyCollection``s."""

    def __init__(self, database: Database[dict[str, Any]], module: str) -> None:
        self._database = database
        self.module = module

    @property
    def name(self) -> str:
        """The database's name."""
        return self._database.name

    def list_collection_names(self) -> list[str]:
        """Names of the database's collections."""
        return self._database.list_collection_names()

    def get_collection(self, name: str) -> ReadOnlyCollection:
        """One collection, read-only."""
        return ReadOnlyCollection(self._database[name], self.module)

    def __getitem__(self, name: str) -> ReadOnlyCollection:
        return self.get_collection(name)

    def __getattr__(self, name: str) -> ReadOnlyCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        if hasattr(Database, name):  # command, drop_collection, create_collection, with_options, ...
            raise ReadOnlyError.refusing(self.module, "database", f"{name}()")
        return self.get_collection(name)  # db.events, as pymongo allows


class ReadOnlyCollection:
    """Another module's collection for reading: ``find``, ``find_one``, ``count_documents``,
    ``distinct``, ``aggregate`` (without ``$out``/``$merge``) and the like; writes are refused."""

    def __init__(self, collection: Collection[dict[str, Any]], module: str) -> None:
        self._collection = collection
        self.module = module

    def aggregate(self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any) -> CommandCursor[Any]:
        """Run an aggregation pipeline that does not write (no ``$out`` or ``$merge`` stage)."""
        if any(stage in step for step in pipeline for stage in WRITING_STAGES):
            raise ReadOnlyError.refusing(self.module, "database", "aggregate() with $out or $merge")
        return self._collection.aggregate(list(pipeline), *args, **kwargs)

    def __getitem__(self, name: str) -> ReadOnlyCollection:
        return ReadOnlyCollection(self._collection[name], self.module)

    def __getattr__(self, name: str) -> Any:
        if name in READ_METHODS:
            return getattr(self._collection, name)
        if name.startswith("_"):
            raise AttributeError(name)
        if hasattr(Collection, name):  # insert_one, update_many, delete_one, drop, create_index, ...
            raise ReadOnlyError.refusing(self.module, "database", f"{self._collection.name}.{name}()")
        return self[name]  # a sub-collection: db.events.archive
