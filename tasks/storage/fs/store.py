"""``fs``: a module's own file store over a backend (GridFS or local disk), with expiry and URLs."""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

import redis

from tasks.errors import ArgumentError, ReadOnlyError
from tasks.storage.fs.backend import Backend, FileInfo
from tasks.storage.fs.names import checked_name, has_control_character, loose_name
from tasks.storage.fs.staged import StagedFile
from tasks.storage.keys import Keys

# What the built-in open takes for text besides the mode; binary reads take none of them.
TEXT_OPTIONS = ("encoding", "errors", "newline")
# A sweep holds a due entry this long (seconds) while it deletes the file; a sweep that died
# meanwhile leaves the entry due again after it.
SWEEP_LEASE = 600.0

# Take a due expiry entry for one sweep: push it a lease into the future, so that a second sweep
# running at the same time skips it. 1 if taken.
_CLAIM = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""
# Drop the entry once its file is gone, unless someone set a new expiry meanwhile.
_RELEASE = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


class FileStore:
    """Files of one analytics module in a backend; expiry times are kept in Redis (shared by every host)."""

    def __init__(self, backend: Backend, module: str, url_prefix: str, client: redis.Redis, keys: Keys) -> None:
        self.backend = backend
        self.module = module
        self._url_prefix = url_prefix.rstrip("/")
        self._client = client
        self._expiry_key = keys.fs_expiry(module)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    def name(self, filename: str) -> str:
        """``filename`` as the store keys it (``./reports//a.csv`` -> ``reports/a.csv``); refuses
        names that would leave the store and names holding a control character (``ArgumentError``)."""
        return checked_name(filename)

    def path(self, filename: str) -> Path:
        """The local path of ``filename``: only a store on local disk (``INSIGHTS_FS_BACKEND=local``)
        has one; use ``open`` to work with any store."""
        name = checked_name(filename)
        local = getattr(self.backend, "path", None)
        if local is None:
            raise ArgumentError(
                f"the file store of module {self.module!r} is in MongoDB (GridFS): {filename!r} has no local "
                "path; read and write it with fs.open"
            )
        path: Path = local(name)
        return path

    def open(self, filename: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Open a file like the built-in ``open``; expired files are gone. What is written becomes
        visible, whole, when the file is closed (readers see the previous file until then); leaving
        a ``with`` block by an exception keeps the previous file."""
        name = checked_name(filename)
        writing = _writing(mode)
        if self.expired(name):
            if not writing:
                raise FileNotFoundError(f"{filename!r} has expired")
            self.remove(name)  # the expired file is gone: what is written now is a new, live file
        if writing:
            return self._write(name, mode, kwargs)
        binary, _ = self.backend.read(name)
        return binary if "b" in mode else _text(binary, kwargs)

    def read(self, filename: str) -> tuple[IO[bytes], FileInfo]:
        """A live file opened in binary, with the facts (size, time, ETag) of exactly what is read.

        Raises ``FileNotFoundError`` (missing or expired) or ``IsADirectoryError`` (a folder)."""
        name = checked_name(filename)
        if self.expired(name):
            raise FileNotFoundError(f"{filename!r} has expired")
        return self.backend.read(name)

    def info(self, filename: str) -> FileInfo | None:
        """Size, modification time and ETag of a live file; None if missing, expired or a folder."""
        name = checked_name(filename)
        try:
            found = self.backend.info(name)
        except OSError:
            return None
        return None if found is None or self.expired(name) else found

    def _write(self, name: str, mode: str, kwargs: dict[str, Any]) -> IO[Any]:
        if self.backend.is_folder(name):
            raise IsADirectoryError(f"{name!r} is a folder of module {self.module!r}'s store; choose a file name")
        if "x" in mode and self.backend.info(name) is not None:
            raise FileExistsError(f"{name!r} exists in module {self.module!r}'s store (mode 'x')")
        scratch = self.backend.scratch()
        try:
            if "a" in mode or "r" in mode:  # appending or updating: start from the current content
                self._copy_current(name, scratch, required="r" in mode)
            file = open(scratch, mode.replace("x", "w"), **kwargs)  # noqa: SIM115 - StagedFile closes it
        except BaseException:
            self.backend.discard(scratch)
            raise
        staged = StagedFile(file, lambda: self.backend.commit(name, scratch), lambda: self.backend.discard(scratch))
        return cast(IO[Any], staged)

    def _copy_current(self, name: str, scratch: Path, required: bool) -> None:
        try:
            current, _ = self.backend.read(name)
        except FileNotFoundError:
            if required:
                raise
            return
        with current, open(scratch, "wb") as copy:
            shutil.copyfileobj(current, copy)

    def exists(self, filename: str) -> bool:
        """Whether ``filename`` (a file or a folder) exists and has not expired."""
        name = checked_name(filename)
        try:
            found = self.backend.info(name) is not None or self.backend.is_folder(name)
        except OSError:  # e.g. a name too long for the file system: no such file
            return False
        return found and not self.expired(name)

    def remove(self, filename: str, recursive: bool = False) -> None:
        """Delete a file and its expiry; a folder, with everything in it, only if ``recursive``."""
        self._remove(checked_name(filename), recursive)

    def _remove(self, name: str, recursive: bool) -> None:
        try:
            self.backend.delete(name, recursive)
        except IsADirectoryError:
            raise ArgumentError(
                f"{name!r} is a folder; remove(..., recursive=True) deletes it with its files"
            ) from None
        self._client.zrem(self._expiry_key, name)

    def listdir(self, folder: str = "") -> list[str]:
        """Names of the live (unexpired) entries in ``folder``."""
        base = checked_name(folder) if folder else ""
        if not self.backend.is_folder(base):
            return []
        prefix = f"{base}/" if base else ""
        names = (n for n in self.backend.children(base) if not has_control_character(n))  # cannot be opened
        return sorted(n for n in names if not self.expired(prefix + n))

    def expire(self, filename: str, seconds: float, days: float = 0, expires: bool = True) -> None:
        """Have ``filename`` removed ``days`` + ``seconds`` from now; ``expires=False`` keeps it."""
        name = checked_name(filename)
        if expires:
            self._client.zadd(self._expiry_key, {name: time.time() + days * 86400 + seconds})
        else:
            self._client.zrem(self._expiry_key, name)

    def expired(self, filename: str) -> bool:
        """Whether ``filename`` has an expiry time in the past."""
        at = self._client.zscore(self._expiry_key, checked_name(filename))
        return at is not None and at <= time.time()

    def get_url(self, filename: str) -> str:
        """The URL under which the web app serves ``filename``."""
        return f"{self._url_prefix}/{quote(self.module)}/{quote(checked_name(filename))}"

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete every expired file (from the backend: for GridFS, on every host); returns their names.

        Sweeps may run at once (on several hosts): each due file is deleted by one of them, and a
        file written again after the sweep took it stays."""
        due_by = time.time() if now is None else now
        due: list[bytes] = self._client.zrangebyscore(self._expiry_key, "-inf", due_by)  # type: ignore[assignment]
        swept = []
        for raw in due:
            name = raw.decode()
            lease = max(due_by, time.time()) + SWEEP_LEASE
            if not self._claim(keys=[self._expiry_key], args=[name, repr(due_by), repr(lease)]):
                continue  # another sweep took it, or it was given a new expiry
            taken = time.time()
            # A name with a control character (named before they were refused) goes all the same;
            # a name no file can have (outside the store) leaves only its entry to drop.
            with contextlib.suppress(ArgumentError):
                self.backend.delete(loose_name(name), recursive=True, written_before=taken)
            self._release(keys=[self._expiry_key], args=[name, repr(lease)])
            swept.append(name)
        return swept


class ReadOnlyFileStore:
    """Another module's file store for reading: ``open`` (to read), ``exists``, ``listdir``,
    ``get_url``; writing, ``remove`` and ``expire`` are refused."""

    def __init__(self, store: FileStore) -> None:
        self._store = store
        self.module = store.module

    def open(self, filename: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Open a file for reading, like the built-in ``open``; expired files are gone."""
        if _writing(mode):
            raise ReadOnlyError.refusing(self.module, "file store", f"open({filename!r}, {mode!r})")
        return self._store.open(filename, mode, **kwargs)

    def exists(self, filename: str) -> bool:
        """Whether ``filename`` exists and has not expired."""
        return self._store.exists(filename)

    def listdir(self, folder: str = "") -> list[str]:
        """Names of the live (unexpired) entries in ``folder``."""
        return self._store.listdir(folder)

    def get_url(self, filename: str) -> str:
        """The URL under which the web app serves ``filename``."""
        return self._store.get_url(filename)

    def remove(self, filename: str, recursive: bool = False) -> None:
        """Refused: a module writes only its own file store."""
        raise ReadOnlyError.refusing(self.module, "file store", f"remove({filename!r})")

    def expire(self, filename: str, seconds: float, days: float = 0, expires: bool = True) -> None:
        """Refused: a module writes only its own file store."""
        raise ReadOnlyError.refusing(self.module, "file store", f"expire({filename!r})")


def _writing(mode: str) -> bool:
    return any(flag in mode for flag in "wax+")


def _text(binary: IO[bytes], options: dict[str, Any]) -> IO[str]:
    """A binary file read as text, with the built-in ``open``'s text options."""
    unknown = set(options) - set(TEXT_OPTIONS) - {"buffering"}
    if unknown:
        binary.close()
        raise TypeError(f"open() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    text = {key: options[key] for key in TEXT_OPTIONS if key in options}
    return io.TextIOWrapper(cast(Any, binary), **text)
