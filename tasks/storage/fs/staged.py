"""A file written aside that becomes a store's file only when it is closed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)


class StagedFile:
    """A file object (as the built-in ``open`` returns) whose content reaches the store on ``close``.

    Leaving a ``with`` block by an exception discards what was written; so does a process that
    dies before closing it. Readers see the previous file until then. A staged file that is never
    closed is committed when it is garbage collected, as the built-in ``open``'s file is flushed.
    """

    def __init__(self, file: IO[Any], commit: Callable[[], None], discard: Callable[[], None]) -> None:
        self._file = file
        self._commit = commit
        self._discard = discard
        self._finished = False

    def close(self) -> None:
        """Close the file and make it the store's file."""
        if self._finished:
            return
        self._finished = True
        try:
            self._file.close()
            self._commit()
        except BaseException:
            self._discard()
            raise

    def discard(self) -> None:
        """Close the file and forget what was written: the store keeps what it had."""
        if self._finished:
            return
        self._finished = True
        try:
            self._file.close()
        finally:
            self._discard()

    @property
    def closed(self) -> bool:
        """Whether the file is closed (committed or discarded)."""
        return self._finished

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._file)

    def __next__(self) -> Any:
        return next(self._file)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._file, attribute)

    def __del__(self) -> None:
        if getattr(self, "_finished", True):
            return
        try:
            self.close()
        except Exception:  # a finalizer must not raise; the store keeps what it had
            log.exception("a file of a module's store was never closed and could not be saved")
