"""Files on this host's disk: ``INSIGHTS_FS_BACKEND=local``, for a single host."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tasks.storage.fs.backend import FileInfo

# Next to the module stores (no module has this name): where files are written before they are renamed.
SCRATCH_FOLDER = ".partial"


class LocalBackend:
    """A module's files under ``root`` (``$INSIGHTS_FS_ROOT/<module>``); written aside in
    ``scratch_dir`` (on the same file system) and renamed into place, so a reader sees a whole file."""

    shared = False

    def __init__(self, root: Path, scratch_dir: Path) -> None:
        self.root = Path(root)
        self._scratch_dir = Path(scratch_dir)

    def path(self, name: str) -> Path:
        """The local path of the checked store name ``name``."""
        return self.root.joinpath(*name.split("/")) if name else self.root

    def info(self, name: str) -> FileInfo | None:
        """The file ``name``, or None (no such file, or a folder)."""
        try:
            found = self.path(name).stat()
        except OSError:  # missing, or a name too long for the file system
            return None
        return _info(found) if stat.S_ISREG(found.st_mode) else None

    def is_folder(self, name: str) -> bool:
        """Whether ``name`` is a folder."""
        try:
            return self.path(name).is_dir()
        except OSError:
            return False

    def read(self, name: str) -> tuple[IO[bytes], FileInfo]:
        """The file opened in binary, with the facts of what was opened."""
        file = open(self.path(name), "rb")  # noqa: SIM115 - the caller closes it
        return file, _info(os.fstat(file.fileno()))

    def scratch(self) -> Path:
        """A fresh empty file next to the stores, to write aside."""
        self._scratch_dir.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix="fs-", suffix=".part", dir=self._scratch_dir)
        os.close(handle)
        return Path(path)

    def commit(self, name: str, scratch: Path, mtime: float | None = None) -> None:
        """Rename ``scratch`` to the file ``name`` (atomic on one file system)."""
        target = self.path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(f"{name!r} is a folder; a file cannot replace it")
            if mtime is not None:
                os.utime(scratch, (mtime, mtime))
            os.replace(scratch, target)
        except BaseException:
            self.discard(scratch)
            raise

    def discard(self, scratch: Path) -> None:
        """Delete a file written aside."""
        scratch.unlink(missing_ok=True)

    def children(self, folder: str) -> list[str]:
        """Names directly in ``folder``."""
        try:
            return os.listdir(self.path(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, name: str, recursive: bool, written_before: float | None = None) -> None:
        """Delete a file, or a folder with what it holds (``recursive``)."""
        path = self.path(name)
        if path.is_dir():
            if not recursive:
                raise IsADirectoryError(f"{name!r} is a folder")
            shutil.rmtree(path, onerror=_gone_is_fine)
            return
        if written_before is not None:
            found = self.info(name)
            if found is None or found.mtime > written_before:  # written again since: keep it
                return
        path.unlink(missing_ok=True)

    def files(self) -> Iterator[tuple[str, FileInfo]]:
        """Every file under the store's root."""
        for folder, _, names in os.walk(self.root):
            for filename in names:
                path = Path(folder) / filename
                found = self.info(path.relative_to(self.root).as_posix())
                if found is not None:
                    yield path.relative_to(self.root).as_posix(), found


def _info(found: os.stat_result) -> FileInfo:
    etag = f"{found.st_ino:x}-{found.st_mtime_ns:x}-{found.st_size:x}"
    return FileInfo(size=found.st_size, mtime=found.st_mtime, etag=etag)


def _gone_is_fine(function: Any, path: str, error: Any) -> None:
    """``rmtree``'s error handler: what another sweep removed meanwhile is fine, anything else raises."""
    if not isinstance(error[1], FileNotFoundError):
        raise error[1]
