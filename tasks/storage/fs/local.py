"""Files on this host's disk: ``INSIGHTS_FS_BACKEND=local``, for a single host.

Symbolic links inside a store are never followed: a link planted there (to ``/etc/...``, a secret,
another store) is no file of the store — not read, listed, served, written through nor migrated.
Names are resolved a folder at a time from the store's root with ``O_NOFOLLOW`` (``_folder_fd``); the
root itself (``$INSIGHTS_FS_ROOT/<module>``) is taken as configured (``fs-migrate`` refuses a linked one).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tasks.storage.fs.backend import FileInfo

# Next to the module stores (no module has this name): where files are written before they are renamed.
SCRATCH_FOLDER = ".partial"

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO planted in the store must not hang; it is refused as not a regular file.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


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

    @contextmanager
    def _folder_fd(self, folder: str) -> Iterator[int]:
        """A descriptor of the store's ``folder``, opened a folder at a time without following a link.

        Raises ``OSError`` (``ENOENT``, ``ENOTDIR``, ``ELOOP``) if a part is missing, not a folder or a link.
        """
        fd = os.open(self.root, _FOLDER_FLAGS & ~os.O_NOFOLLOW)  # the store's root as configured
        try:
            for part in folder.split("/") if folder else ():
                inner = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def _lstat(self, name: str) -> os.stat_result | None:
        """What ``name`` itself is (a link is not followed), or None when it or a folder on its way is
        missing, is a link, or the name is too long for the file system."""
        folder, _, last = name.rpartition("/")
        try:
            with self._folder_fd(folder) as fd:
                return os.stat(last, dir_fd=fd, follow_symlinks=False) if last else os.fstat(fd)
        except OSError:
            return None

    def info(self, name: str) -> FileInfo | None:
        """The file ``name``, or None (no such file, a folder, or not a regular file: a link is not one)."""
        found = self._lstat(name)
        return _info(found) if found is not None and stat.S_ISREG(found.st_mode) else None

    def is_folder(self, name: str) -> bool:
        """Whether ``name`` is a folder (a link to one is not)."""
        found = self._lstat(name)
        return found is not None and stat.S_ISDIR(found.st_mode)

    def read(self, name: str) -> tuple[IO[bytes], FileInfo]:
        """The file opened in binary, with the facts of what was opened; a link, or a name under a
        linked folder, is ``FileNotFoundError``."""
        folder, _, last = name.rpartition("/")
        try:
            with self._folder_fd(folder) as folder_fd:
                fd = os.open(last, _FILE_FLAGS, dir_fd=folder_fd)
        except OSError as error:
            if isinstance(error, IsADirectoryError):
                raise
            raise FileNotFoundError(f"no file {name!r} in the store ({error.strerror})") from None
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            os.close(fd)
            if stat.S_ISDIR(found.st_mode):
                raise IsADirectoryError(f"{name!r} is a folder")
            raise FileNotFoundError(f"{name!r} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), _info(found)

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
            with self._folder_fd(name.rpartition("/")[0]):  # refuses a folder on the way that is a link
                pass
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
            with self._folder_fd(folder) as fd:
                return os.listdir(fd)
        except OSError:  # missing, a file, or a link
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
        """Every regular file under the store's root (links, to files or folders, are not followed)."""
        for name, found in self.entries():
            if stat.S_ISREG(found.st_mode):
                yield name, _info(found)

    def links(self) -> Iterator[str]:
        """Every symbolic link under the store's root (to a file or a folder): no file of the store."""
        for name, found in self.entries():
            if stat.S_ISLNK(found.st_mode):
                yield name

    def entries(self) -> Iterator[tuple[str, os.stat_result]]:
        """Every entry under the store's root but its folders, with its ``lstat`` (links not followed)."""
        for folder, folders, names in os.walk(self.root):
            for filename in [*names, *(f for f in folders if os.path.islink(os.path.join(folder, f)))]:
                name = (Path(folder) / filename).relative_to(self.root).as_posix()
                found = self._lstat(name)
                if found is not None:
                    yield name, found


def _info(found: os.stat_result) -> FileInfo:
    etag = f"{found.st_ino:x}-{found.st_mtime_ns:x}-{found.st_size:x}"
    return FileInfo(size=found.st_size, mtime=found.st_mtime, etag=etag)


def _gone_is_fine(function: Any, path: str, error: Any) -> None:
    """``rmtree``'s error handler: what another sweep removed meanwhile is fine, anything else raises."""
    if not isinstance(error[1], FileNotFoundError):
        raise error[1]
