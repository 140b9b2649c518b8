"""A module's file store (``fs``) and the backends it keeps files in: GridFS (shared by every
host, the default) or local disk (one host), chosen by ``INSIGHTS_FS_BACKEND``."""

from tasks.storage.fs.backend import Backend, FileInfo
from tasks.storage.fs.grid import GridBackend
from tasks.storage.fs.local import SCRATCH_FOLDER, LocalBackend
from tasks.storage.fs.names import has_control_character
from tasks.storage.fs.store import FileStore, ReadOnlyFileStore

__all__ = [
    "SCRATCH_FOLDER",
    "Backend",
    "FileInfo",
    "FileStore",
    "GridBackend",
    "LocalBackend",
    "ReadOnlyFileStore",
    "has_control_character",
]
