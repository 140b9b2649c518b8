"""Files in the deployment's MongoDB (GridFS): ``INSIGHTS_FS_BACKEND=gridfs``, seen by every host.

Each module's files are in its own database (``insights_<module>``): the content in the GridFS
bucket ``insights_fs`` (collections ``insights_fs.files`` / ``insights_fs.chunks``), and a catalog,
``insights_fs_catalog``, with one document per file and folder::

    {_id: "reports/a.csv", kind: "file", folder: "reports", file: <GridFS id>, size, mtime, written}
    {_id: "reports", kind: "folder", folder: ""}

A write uploads a new GridFS file, then points the catalog at it in one ``find_one_and_update``
and deletes the version it replaced: readers see the old file or the new one, never a part, and
an upload cut short by a crash is in no catalog entry. The catalog is queried by ``_id`` and by
``folder`` equality only, forms that nx-27017 answers as MongoDB does (it serves GridFS
collections through an adapter whose filters on ``filename`` know equality only).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gridfs import GridFSBucket
from gridfs.errors import NoFile
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import OperationFailure

from tasks.storage.fs.backend import FileInfo
from tasks.storage.fs.names import folders_above, parent_of

BUCKET = "insights_fs"
CATALOG = "insights_fs_catalog"
# A reader racing a writer may find the version it looked up already replaced: it looks again.
READ_ATTEMPTS = 3


class GridBackend:
    """A module's files in GridFS in the module's own database, with a catalog of names."""

    shared = True

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._bucket = GridFSBucket(database, BUCKET)
        self._catalog = database[CATALOG]

    def ensure_indexes(self) -> None:
        """Create the catalog's index on ``folder`` (what ``listdir`` asks by)."""
        self._catalog.create_index("folder")

    def info(self, name: str) -> FileInfo | None:
        """The file ``name``, or None (no such file, or a folder)."""
        entry = self._catalog.find_one({"_id": name})
        return _info(entry) if entry is not None and entry.get("kind") == "file" else None

    def is_folder(self, name: str) -> bool:
        """Whether ``name`` is a folder (the top always is)."""
        if not name:
            return True
        entry = self._catalog.find_one({"_id": name})
        return entry is not None and entry.get("kind") == "folder"

    def read(self, name: str) -> tuple[IO[bytes], FileInfo]:
        """The file opened for streaming (a GridFS chunk at a time), with the facts of that version."""
        for _ in range(READ_ATTEMPTS):
            entry = self._catalog.find_one({"_id": name})
            if entry is None:
                raise FileNotFoundError(f"no file {name!r}")
            if entry.get("kind") != "file":
                raise IsADirectoryError(f"{name!r} is a folder")
            try:
                stream: Any = self._bucket.open_download_stream(entry["file"])
            except NoFile:  # replaced (or removed) since the catalog was read
                continue
            return stream, _info(entry)
        raise FileNotFoundError(f"file {name!r} kept changing while it was opened; try again")

    def scratch(self) -> Path:
        """A fresh empty local temporary file, to write aside before uploading."""
        handle, path = tempfile.mkstemp(prefix="insights-fs-", suffix=".part")
        os.close(handle)
        return Path(path)

    def commit(self, name: str, scratch: Path, mtime: float | None = None) -> None:
        """Upload ``scratch`` as the file ``name``, then delete ``scratch``."""
        try:
            self.put(name, scratch, mtime)
        finally:
            self.discard(scratch)

    def put(self, name: str, source: Path, mtime: float | None = None) -> None:
        """Upload the local file ``source`` as the file ``name`` (``source`` stays)."""
        with open(source, "rb") as f:
            self.put_stream(name, f, mtime)

    def put_stream(self, name: str, source: IO[bytes], mtime: float | None = None) -> None:
        """Upload what is left to read of ``source`` as the file ``name`` (the caller closes ``source``)."""
        self._check_room(name)
        start = source.tell()
        file_id = self._bucket.upload_from_stream(name, source)
        size = source.tell() - start
        written = time.time()
        entry = {"kind": "file", "folder": parent_of(name), "file": file_id, "size": size}
        entry |= {"mtime": written if mtime is None else mtime, "written": written}
        before = self._catalog.find_one_and_update(
            {"_id": name}, {"$set": entry}, upsert=True, return_document=ReturnDocument.BEFORE
        )
        if before is not None and before.get("kind") == "folder":  # made a folder meanwhile: it stays one
            self._catalog.replace_one({"_id": name}, before)
            self._delete_content(file_id)
            raise IsADirectoryError(f"{name!r} is a folder; a file cannot replace it")
        for folder in folders_above(name):
            self._catalog.update_one(
                {"_id": folder}, {"$setOnInsert": {"kind": "folder", "folder": parent_of(folder)}}, upsert=True
            )
        if before is not None and before.get("file") is not None:
            self._delete_content(before["file"])

    def _check_room(self, name: str) -> None:
        """Refuse a file where a folder is, or under a file, as a file system would."""
        if self.is_folder(name):
            raise IsADirectoryError(f"{name!r} is a folder; a file cannot replace it")
        above = folders_above(name)
        if above:
            blocking = self._catalog.find_one({"_id": {"$in": above}, "kind": "file"})
            if blocking is not None:
                raise NotADirectoryError(f"{blocking['_id']!r} is a file, not a folder: {name!r} cannot be written")

    def discard(self, scratch: Path) -> None:
        """Delete a local file written aside."""
        scratch.unlink(missing_ok=True)

    def children(self, folder: str) -> list[str]:
        """Names directly in ``folder``."""
        return [str(entry["_id"]).rpartition("/")[2] for entry in self._catalog.find({"folder": folder})]

    def delete(self, name: str, recursive: bool, written_before: float | None = None) -> None:
        """Delete a file, or a folder with what it holds (``recursive``); each entry goes once,
        whoever else deletes it at the same time."""
        entry = self._catalog.find_one({"_id": name})
        if entry is None:
            return
        if entry.get("kind") == "folder":
            if not recursive:
                raise IsADirectoryError(f"{name!r} is a folder")
            for child in self.children(name):
                self.delete(f"{name}/{child}", True, written_before)
            if self._catalog.find_one({"folder": name}) is None:  # nothing was written into it meanwhile
                self._catalog.delete_one({"_id": name, "kind": "folder"})
            return
        query: dict[str, Any] = {"_id": name, "kind": "file"}
        if written_before is not None:
            query["written"] = {"$lte": written_before}
        gone = self._catalog.find_one_and_delete(query)
        if gone is not None:
            self._delete_content(gone["file"])

    def files(self) -> Iterator[tuple[str, FileInfo]]:
        """Every file in the catalog."""
        for entry in self._catalog.find({"kind": "file"}):
            yield str(entry["_id"]), _info(entry)

    def _delete_content(self, file_id: Any) -> None:
        try:
            self._bucket.delete(file_id)
        except NoFile:
            pass
        except OperationFailure as error:  # nx-27017 reports a missing file this way
            if "not found" not in str(error):
                raise


def _info(entry: dict[str, Any]) -> FileInfo:
    return FileInfo(size=int(entry["size"]), mtime=float(entry["mtime"]), etag=str(entry["file"]))
