"""A module's ``mongodb`` on the embedded nx-27017: the operations it would silently get wrong are refused.

nx-27017 (the MongoDB wire-protocol server started when ``MONGO_URL`` is not set) answers every
write with success, but some it gets wrong (tests/tasks/storage/test_mongo_compat.py records
them). Each of those raises ``EmbeddedServerLimit`` here, naming the operator and a portable
form, instead of succeeding with a wrong result:

- ``$addToSet`` on a matched document that lacks the array: nx-27017 does nothing (MongoDB creates
  the array). Refused when such a document matches the filter (one extra read per update).
- a datetime anywhere in an update operator other than ``$setOnInsert`` (``$set``, ``$max``,
  ``$min``, ``$push``, ``$addToSet``, …): written into an existing document it is stored as text,
  and ``$max``/``$min`` compare it as text.
- a datetime inside an aggregation pipeline (``$match`` on a time): nx-27017 does not compare it.
- an aggregation result holding a datetime turned into text (``$group`` by a datetime, or its
  ``$max``/``$min``): refused when read.

A real MongoDB gets the plain pymongo classes: nothing here runs there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import UpdateMany, UpdateOne
from pymongo.collection import Collection
from pymongo.command_cursor import CommandCursor
from pymongo.database import Database
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from tasks.errors import EmbeddedServerLimit

EMBEDDED_PROCESS = "nx_27017"  # the ``process`` field of nx-27017's buildInfo answer
_DATE_TEXT = '{"$date":'  # how nx-27017 returns a datetime it turned into text in an aggregation

ADD_TO_SET_PORTABLE = (
    "create the array when the document is created — upsert with the $addToSet itself, or "
    "insert the document with the field set to [] — or first run "
    "update_one({**filter, field: {'$exists': False}}, {'$set': {field: []}}) and then the $addToSet"
)
DATETIME_UPDATE_PORTABLE = (
    "write times with $setOnInsert (upsert one record per event id), insert_one or replace_one of the "
    "whole document; for a latest/earliest time keep a number (when.timestamp()) under $max/$min"
)
DATETIME_PIPELINE_PORTABLE = (
    "select by time with find(filter) (which compares datetimes right) and do the grouping in pandas, "
    "or store the time as a number (when.timestamp())"
)


def is_embedded(database: Database[Any]) -> bool:
    """Whether ``database`` is served by nx-27017 (its ``buildInfo`` answer says ``process: nx_27017``)."""
    return database.client.admin.command("buildInfo").get("process") == EMBEDDED_PROCESS


def guarded(database: Database[dict[str, Any]]) -> EmbeddedDatabase:
    """``database`` (on nx-27017) as an ``EmbeddedDatabase``: same client, name and options."""
    return EmbeddedDatabase(
        database.client,
        database.name,
        database.codec_options,
        database.read_preference,
        database.write_concern,
        database.read_concern,
    )


def _datetime_in(value: Any) -> bool:
    """Whether a datetime is anywhere inside ``value`` (mappings and lists are searched)."""
    if isinstance(value, datetime):
        return True
    if isinstance(value, Mapping):
        return any(_datetime_in(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_datetime_in(item) for item in value)
    return False


def _date_text_in(value: Any) -> bool:
    """Whether ``value`` holds a datetime nx-27017 turned into text (``'{"$date": …}'``)."""
    if isinstance(value, str):
        return value.startswith(_DATE_TEXT)
    if isinstance(value, Mapping):
        return any(_date_text_in(item) for item in value.values())
    if isinstance(value, list):
        return any(_date_text_in(item) for item in value)
    return False


class EmbeddedDatabase(Database[dict[str, Any]]):
    """A module's database on nx-27017: its collections are ``EmbeddedCollection``s."""

    def __getitem__(self, name: str) -> Collection[dict[str, Any]]:
        return self.get_collection(name)

    def get_collection(  # type: ignore[override]
        self,
        name: str,
        codec_options: CodecOptions[dict[str, Any]] | None = None,
        read_preference: Any = None,
        write_concern: WriteConcern | None = None,
        read_concern: ReadConcern | None = None,
    ) -> Collection[dict[str, Any]]:
        """A collection that refuses what nx-27017 would get wrong."""
        return EmbeddedCollection(self, name, False, codec_options, read_preference, write_concern, read_concern)


class EmbeddedCollection(Collection[dict[str, Any]]):
    """A collection on nx-27017: the update and aggregation forms it gets wrong raise ``EmbeddedServerLimit``."""

    def __getitem__(self, name: str) -> Collection[dict[str, Any]]:
        return EmbeddedCollection(
            self.database,
            f"{self.name}.{name}",
            False,
            self.codec_options,
            self.read_preference,
            self.write_concern,
            self.read_concern,
        )

    def with_options(self, *args: Any, **kwargs: Any) -> Collection[dict[str, Any]]:  # type: ignore[override]
        """``Collection.with_options``, still guarded."""
        other = super().with_options(*args, **kwargs)
        return EmbeddedCollection(
            self.database,
            self.name,
            False,
            other.codec_options,
            other.read_preference,
            other.write_concern,
            other.read_concern,
        )

    def check_update(self, filter: Mapping[str, Any], update: Any, method: str) -> None:
        """Raise ``EmbeddedServerLimit`` if nx-27017 would get ``update`` (on documents matching ``filter``) wrong."""
        if not isinstance(update, Mapping):  # an aggregation-pipeline update: passed through
            return
        for operator, fields in update.items():
            if operator != "$setOnInsert" and _datetime_in(fields):
                raise EmbeddedServerLimit(
                    f"{method} with a datetime under {operator}",
                    "stores a datetime written into an existing document as text, and compares it as text "
                    "under $max/$min — the write would succeed with a wrong value",
                    DATETIME_UPDATE_PORTABLE,
                )
        for path in update.get("$addToSet") or {}:
            lacking = {"$and": [dict(filter), {path: {"$exists": False}}]}
            if super().find_one(lacking, {"_id": 1}) is not None:
                raise EmbeddedServerLimit(
                    f"{method} with $addToSet on {path!r}",
                    f"ignores $addToSet on a document that has no {path!r} yet (MongoDB would create the array) "
                    "— the write would succeed and change nothing",
                    ADD_TO_SET_PORTABLE,
                )

    def update_one(self, filter: Mapping[str, Any], update: Any, *args: Any, **kwargs: Any) -> Any:
        """``Collection.update_one``, refused if nx-27017 would get it wrong."""
        self.check_update(filter, update, "update_one()")
        return super().update_one(filter, update, *args, **kwargs)

    def update_many(self, filter: Mapping[str, Any], update: Any, *args: Any, **kwargs: Any) -> Any:
        """``Collection.update_many``, refused if nx-27017 would get it wrong."""
        self.check_update(filter, update, "update_many()")
        return super().update_many(filter, update, *args, **kwargs)

    def find_one_and_update(self, filter: Mapping[str, Any], update: Any, *args: Any, **kwargs: Any) -> Any:
        """``Collection.find_one_and_update``, refused if nx-27017 would get it wrong."""
        self.check_update(filter, update, "find_one_and_update()")
        return super().find_one_and_update(filter, update, *args, **kwargs)

    def bulk_write(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        """``Collection.bulk_write``, refused (before anything is written) if nx-27017 would get an update wrong."""
        for request in requests:
            if isinstance(request, UpdateOne | UpdateMany):
                self.check_update(request._filter, request._doc, f"bulk_write({type(request).__name__})")
        return super().bulk_write(requests, *args, **kwargs)

    def aggregate(self, pipeline: Any, *args: Any, **kwargs: Any) -> CommandCursor[dict[str, Any]]:
        """``Collection.aggregate``; refused if the pipeline holds a datetime, and a result holding a
        datetime nx-27017 turned into text raises when read."""
        if _datetime_in(list(pipeline)):
            raise EmbeddedServerLimit(
                "aggregate() with a datetime in the pipeline",
                "does not compare datetimes inside a pipeline ($match on a time matches wrongly)",
                DATETIME_PIPELINE_PORTABLE,
            )
        cursor = super().aggregate(pipeline, *args, **kwargs)
        cursor.__class__ = CheckedCursor  # same object, results checked as they are read
        return cursor


class CheckedCursor(CommandCursor[dict[str, Any]]):
    """An aggregation cursor on nx-27017 whose results are checked for datetimes turned into text."""

    @staticmethod
    def _checked(document: dict[str, Any]) -> dict[str, Any]:
        if _date_text_in(document):
            raise EmbeddedServerLimit(
                "aggregate() grouping by a datetime or taking its $max/$min",
                f"returns such a datetime as text ({document!r})",
                "take the latest/earliest with find(filter).sort(field, -1).limit(1) or $sort then $first/$last, "
                "and group by time in pandas",
            )
        return document

    def next(self) -> dict[str, Any]:
        """The next result, checked."""
        return self._checked(super().next())

    __next__ = next

    def try_next(self) -> dict[str, Any] | None:
        """The next result if one is ready, checked."""
        document = super().try_next()
        return None if document is None else self._checked(document)

    def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        """The remaining results (up to ``length``), checked."""
        return [self._checked(document) for document in super().to_list(length)]
