"""What a file-store backend provides (local disk, GridFS), and the facts kept about a file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol


@dataclass(frozen=True)
class FileInfo:
    """One version of a stored file: its size in bytes, when it was written (epoch seconds), and
    a tag that changes whenever the file is written again (HTTP's ``ETag``)."""

    size: int
    mtime: float
    etag: str


class Backend(Protocol):
    """Where a module's files live. Names are checked, normalized store names (``reports/a.csv``)."""

    shared: bool  # every host of the deployment sees the same files

    def info(self, name: str) -> FileInfo | None:
        """The file ``name``, or None when there is no such file (a folder is not a file)."""

    def is_folder(self, name: str) -> bool:
        """Whether ``name`` is a folder (it holds files, or held some)."""

    def read(self, name: str) -> tuple[IO[bytes], FileInfo]:
        """The file ``name`` opened for reading in binary, and the facts of exactly that version.

        Raises ``FileNotFoundError`` (no such file) or ``IsADirectoryError`` (a folder)."""

    def scratch(self) -> Path:
        """A fresh local path to write a file aside before ``commit`` (nothing there yet)."""

    def commit(self, name: str, scratch: Path, mtime: float | None = None) -> None:
        """Make the file written at ``scratch`` the file ``name`` at once (readers see the old file or
        the new one, never a part), and forget ``scratch``. ``mtime``: keep this modification time."""

    def discard(self, scratch: Path) -> None:
        """Forget a file written aside that is not to be committed."""

    def children(self, folder: str) -> list[str]:
        """The names of the files and folders directly in ``folder`` (``""``: the top), unsorted."""

    def delete(self, name: str, recursive: bool, written_before: float | None = None) -> None:
        """Delete the file ``name``, or the folder ``name`` with all it holds when ``recursive``
        (``IsADirectoryError`` otherwise). ``written_before``: only what was written before then.
        Deleting what is not there is fine."""

    def files(self) -> Iterator[tuple[str, FileInfo]]:
        """Every file of the store with its facts (for moving a store)."""
