"""``python -m tasks fs-migrate``: move module file stores from local disk into GridFS.

Each folder under the source (``INSIGHTS_FS_ROOT`` by default) is a module's store. Every live
file is uploaded to that module's GridFS store with its modification time, unless a file of the
same size and time is there already: running it again moves nothing twice. Expired files are left
for the sweeper. Expiry times live in Redis under the module and file name, which do not change,
so every file keeps its expiry. ``--remove`` deletes each local file once it is in GridFS.
Symbolic links (a linked module folder, a link to a file or a folder in a store) are refused and
reported, never followed: their targets are not the store's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.errors import ArgumentError
from tasks.storage.fs import SCRATCH_FOLDER, FileInfo, FileStore, GridBackend, LocalBackend
from tasks.storage.fs.names import checked_name
from tasks.storage.services import Services


@dataclass
class Migration:
    """What a migration did, as ``module/name`` lists."""

    moved: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "module/name: why"

    def summary(self) -> str:
        """One line per kind of outcome, refusals listed."""
        lines = [
            f"moved {len(self.moved)} file(s) into GridFS",
            f"{len(self.already_there)} already there",
            f"{len(self.expired)} expired (left for the sweeper)",
        ]
        if self.removed:
            lines.append(f"removed {len(self.removed)} local file(s)")
        lines.append(f"{len(self.refused)} refused" + "".join(f"\n  {why}" for why in self.refused))
        return "\n".join(lines)


def migrate_files(
    services: Services, source: Path | None = None, modules: list[str] | None = None, remove: bool = False
) -> Migration:
    """Move the local stores under ``source`` (default ``INSIGHTS_FS_ROOT``) into GridFS; idempotent."""
    root = Path(source or services.settings.fs_root)
    done = Migration()
    if not root.is_dir():
        return done
    for folder in sorted(root.iterdir()):
        module = folder.name
        if module == SCRATCH_FOLDER or (modules is not None and module not in modules):
            continue
        if folder.is_symlink():  # its files are wherever the link points: not the store's
            done.refused.append(f"{module}/: a symbolic link, not a folder (not followed)")
            continue
        if not folder.is_dir():
            continue
        if not module.isidentifier():
            done.refused.append(f"{module}/: not a module name")
            continue
        local = LocalBackend(folder, root / SCRATCH_FOLDER)
        store = FileStore(local, module, services.settings.fs_url_prefix, services.redis, services.keys)
        grid = services.fs_backend(module, "gridfs")  # its catalog's index made once per process
        if not isinstance(grid, GridBackend):
            raise TypeError(f"the gridfs backend of {module!r} is a {type(grid).__name__}")
        done.refused.extend(f"{module}/{name}: a symbolic link (not followed)" for name in sorted(local.links()))
        for name, info in sorted(local.files()):
            _migrate_file(store, local, grid, name, info, remove, done)
    return done


def _migrate_file(
    store: FileStore, local: LocalBackend, grid: GridBackend, name: str, info: FileInfo, remove: bool, done: Migration
) -> None:
    """Upload the local file ``name`` (as on disk) to GridFS under the name the store keys it by."""
    try:
        stored = checked_name(name)  # the name the store looks it up by (``a\\b`` -> ``a/b``)
    except ArgumentError as error:  # a control character: no store could serve it
        original = f"{store.module}/{name}"
        done.refused.append(f"{original!r}: {error}")
        return
    label = f"{store.module}/{stored}"
    if store.expired(stored):
        done.expired.append(label)
        return
    there = grid.info(stored)
    if there is not None and there.size == info.size and abs(there.mtime - info.mtime) < 0.001:
        done.already_there.append(label)
    else:
        try:
            source, _ = local.read(name)  # not through a link, should one have been made since
            with source:
                grid.put_stream(stored, source, mtime=info.mtime)
        except OSError as error:  # a folder of that name in GridFS, or a file above it; replaced by a link
            done.refused.append(f"{label}: {error}")
            return
        done.moved.append(label)
    if remove:
        local.path(name).unlink(missing_ok=True)
        done.removed.append(label)
