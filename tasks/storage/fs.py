"""``fs``: a module's own file store on local disk, with expiry and URLs."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

import redis

from tasks.errors import ArgumentError, ReadOnlyError
from tasks.storage.keys import Keys


class FileStore:
    """Files of one analytics module under ``root/<module>``; expiry times are kept in Redis."""

    def __init__(self, root: Path, module: str, url_prefix: str, client: redis.Redis, keys: Keys) -> None:
        self.root = Path(root) / module
        self.module = module
        self._url_prefix = url_prefix.rstrip("/")
        self._client = client
        self._expiry_key = keys.fs_expiry(module)

    def path(self, filename: str) -> Path:
        """The local path of ``filename``; refuses names that would leave the store, and names
        holding a control character (CR, LF, ESC…: no HTTP header could name such a file, so
        ``/fs`` could not serve it, and a log line could be forged with it)."""
        path = self._resolve(filename)
        if has_control_character(str(filename)):
            raise ArgumentError(f"file name {filename!r} holds a control character; use printable names")
        return path

    def _resolve(self, filename: str) -> Path:
        """``path`` without the control-character rule (for removing files named before it held)."""
        parts = PurePosixPath(str(filename).replace("\\", "/")).parts
        if not parts or parts[0].startswith("/") or any(p in ("..", "") for p in parts) or "\x00" in str(filename):
            raise ArgumentError(f"file name {filename!r} is not a relative path inside the module's store")
        return self.root.joinpath(*parts)

    def open(self, filename: str, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Open a file like the built-in ``open``; writing creates folders, expired files are gone."""
        path = self.path(filename)
        writing = _writing(mode)
        if self.expired(filename):
            if not writing:
                raise FileNotFoundError(f"{filename!r} has expired")
            self.remove(filename)  # the expired file is gone: what is written now is a new, live file
        if writing:
            path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, **kwargs)

    def exists(self, filename: str) -> bool:
        """Whether ``filename`` exists and has not expired."""
        try:
            found = self.path(filename).exists()
        except OSError:  # e.g. a name too long for the file system: no such file
            return False
        return found and not self.expired(filename)

    def remove(self, filename: str, recursive: bool = False) -> None:
        """Delete a file and its expiry; a folder, with everything in it, only if ``recursive``."""
        path = self.path(filename)
        self._remove_path(path, self._key(filename), recursive)

    def _remove_path(self, path: Path, key: str, recursive: bool) -> None:
        if path.is_dir():
            if not recursive:
                raise ArgumentError(f"{key!r} is a folder; remove(..., recursive=True) deletes it with its files")
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        self._client.zrem(self._expiry_key, key)

    def listdir(self, folder: str = "") -> list[str]:
        """Names of the live (unexpired) entries in ``folder``."""
        base = self.path(folder) if folder else self.root
        if not base.is_dir():
            return []
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        names = (n for n in os.listdir(base) if not has_control_character(n))  # such a name cannot be opened
        return sorted(n for n in names if not self.expired(prefix + n))

    def expire(self, filename: str, seconds: float, days: float = 0, expires: bool = True) -> None:
        """Have ``filename`` removed ``days`` + ``seconds`` from now; ``expires=False`` keeps it."""
        if expires:
            self._client.zadd(self._expiry_key, {self._key(filename): time.time() + days * 86400 + seconds})
        else:
            self._client.zrem(self._expiry_key, self._key(filename))

    def expired(self, filename: str) -> bool:
        """Whether ``filename`` has an expiry time in the past."""
        at = self._client.zscore(self._expiry_key, self._key(filename))
        return at is not None and at <= time.time()

    def get_url(self, filename: str) -> str:
        """The URL under which the web app serves ``filename``."""
        return f"{self._url_prefix}/{quote(self.module)}/{quote(self._key(filename))}"

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete every expired file; returns their names."""
        due: list[bytes] = self._client.zrangebyscore(self._expiry_key, "-inf", now or time.time())  # type: ignore[assignment]
        names = [n.decode() for n in due]
        for name in names:
            if has_control_character(name):  # named before such names were refused: remove it all the same
                self._remove_path(self._resolve(name), name, recursive=True)
            else:
                self.remove(name, recursive=True)  # an expiry set on a folder covers what it holds
        return names

    def _key(self, filename: str) -> str:
        return self.path(filename).relative_to(self.root).as_posix()


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


def has_control_character(name: str) -> bool:
    """Whether ``name`` holds a control character (C0, DEL or C1: ``\\x00``-``\\x1f``, ``\\x7f``-``\\x9f``)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name)
