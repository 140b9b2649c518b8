"""``python -m tasks fs-migrate``: local module stores moved into GridFS, idempotently, expiry kept."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.ops.fs_migrate import migrate_files
from tasks.storage.fs import FileStore
from tasks.storage.services import Services
from tests.conftest import CLI


@pytest.fixture
def services(settings: Settings, tmp_path: Path) -> Iterator[Services]:
    """Services of a deployment whose local stores are under ``tmp_path/files`` (shared Redis and MongoDB)."""
    made = Services(dataclasses.replace(settings, data_dir=tmp_path, fs_root=tmp_path / "files"))
    yield made
    made.close()


def local_store(services: Services, module: str) -> FileStore:
    return FileStore(services.fs_backend(module, "local"), module, "/fs", services.redis, services.keys)


def grid_store(services: Services, module: str) -> FileStore:
    return FileStore(services.fs_backend(module, "gridfs"), module, "/fs", services.redis, services.keys)


def fill(store: FileStore, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        with store.open(name, "wb") as f:
            f.write(data)


def test_local_files_move_into_gridfs_with_their_time_and_expiry(services: Services) -> None:
    module = f"mig{uuid.uuid4().hex[:8]}"
    local = local_store(services, module)
    fill(local, {"a.txt": b"alpha", "reports/r.csv": b"a,b\n", "plots/p.png": b"\x89PNG", "old.txt": b"gone"})
    os.utime(local.path("a.txt"), (1_700_000_000, 1_700_000_000))
    local.expire("reports/r.csv", 3600)
    local.expire("old.txt", -1)

    done = migrate_files(services, modules=[module])

    assert sorted(done.moved) == [f"{module}/a.txt", f"{module}/plots/p.png", f"{module}/reports/r.csv"]
    assert done.expired == [f"{module}/old.txt"] and done.refused == [] and done.removed == []
    grid = grid_store(services, module)
    assert grid.open("a.txt", "rb").read() == b"alpha" and grid.open("reports/r.csv").read() == "a,b\n"
    info = grid.info("a.txt")
    assert info is not None and info.mtime == 1_700_000_000 and info.size == 5
    assert grid.listdir() == ["a.txt", "plots", "reports"]  # old.txt expired: not moved, not listed
    at = services.redis.zscore(services.keys.fs_expiry(module), "reports/r.csv")
    assert at is not None and at > time.time() + 3000  # its expiry holds for the GridFS copy
    assert local.exists("a.txt")  # copied, not removed


def test_migrating_again_moves_nothing_twice_and_remove_deletes_the_local_files(services: Services) -> None:
    module = f"mig{uuid.uuid4().hex[:8]}"
    local = local_store(services, module)
    fill(local, {"a.txt": b"one", "b/c.txt": b"two"})
    assert len(migrate_files(services, modules=[module]).moved) == 2

    again = migrate_files(services, modules=[module])
    assert again.moved == [] and sorted(again.already_there) == [f"{module}/a.txt", f"{module}/b/c.txt"]

    fill(local, {"a.txt": b"changed"})  # a file changed on disk since is moved again
    last = migrate_files(services, modules=[module], remove=True)
    assert last.moved == [f"{module}/a.txt"] and last.already_there == [f"{module}/b/c.txt"]
    assert sorted(last.removed) == [f"{module}/a.txt", f"{module}/b/c.txt"]
    assert not local.path("a.txt").exists() and not local.path("b/c.txt").exists()
    assert grid_store(services, module).open("a.txt").read() == "changed"


def test_names_no_store_can_serve_are_refused_and_reported(services: Services) -> None:
    module = f"mig{uuid.uuid4().hex[:8]}"
    local = local_store(services, module)
    fill(local, {"fine.txt": b"ok", "clash": b"a file here"})
    local.path("x").mkdir(parents=True)
    (local.path("x") / "bad\rname.txt").write_bytes(b"cr")  # written before such names were refused
    grid = grid_store(services, module)
    fill(grid, {"clash/inside.txt": b"a folder in GridFS"})
    (services.settings.fs_root / "not-a-module").mkdir()

    done = migrate_files(services, modules=[module, "not-a-module"])

    assert done.moved == [f"{module}/fine.txt"]
    assert len(done.refused) == 3 and "not-a-module/: not a module name" in done.refused
    assert any("control character" in why for why in done.refused)
    assert any(why.startswith(f"{module}/clash: ") for why in done.refused)
    assert grid.open("clash/inside.txt").read() == "a folder in GridFS"


@pytest.mark.slow  # a command-line subprocess
def test_the_command_moves_a_store_from_a_folder_and_reports_it(cli: CLI, tmp_path: Path, settings: Settings) -> None:
    module = f"mig{uuid.uuid4().hex[:8]}"
    source = Services(dataclasses.replace(settings, fs_root=tmp_path / "old-files"))
    try:
        fill(local_store(source, module), {"a.txt": b"one", "r/b.csv": b"two"})
        first = cli("fs-migrate", "--from", str(tmp_path / "old-files"), "--module", module)
        assert f"moved {module}/a.txt" in first.stdout and "moved 2 file(s) into GridFS" in first.stdout
        second = cli("fs-migrate", "--from", str(tmp_path / "old-files"), "--module", module)
        assert "moved 0 file(s)" in second.stdout and "2 already there" in second.stdout
        assert grid_store(source, module).open("r/b.csv").read() == "two"
        missing = cli("fs-migrate", "--from", str(tmp_path / "nowhere"), expect=2)
        assert "no such folder" in missing.stderr
    finally:
        source.close()


def test_symbolic_links_are_refused_and_reported_never_followed(services: Services, tmp_path: Path) -> None:
    module, linked_module = f"mig{uuid.uuid4().hex[:8]}", f"mig{uuid.uuid4().hex[:8]}"
    local = local_store(services, module)
    fill(local, {"fine.txt": b"ok"})
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not the store's")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "inner.txt").write_bytes(b"not the store's either")
    local.path("leak.txt").symlink_to(secret)  # a link to a file outside the store
    local.path("linked").symlink_to(outside / "sub")  # a link to a folder outside it
    (services.settings.fs_root / linked_module).symlink_to(outside, target_is_directory=True)  # a linked store

    done = migrate_files(services, modules=[module, linked_module])

    assert done.moved == [f"{module}/fine.txt"]
    assert sorted(why.split(":")[0] for why in done.refused) == sorted(
        [f"{module}/leak.txt", f"{module}/linked", f"{linked_module}/"]
    )
    assert all("symbolic link" in why for why in done.refused)
    grid = grid_store(services, module)
    assert grid.listdir() == ["fine.txt"] and grid_store(services, linked_module).listdir() == []


def test_a_name_with_a_backslash_is_stored_as_the_store_looks_it_up(services: Services) -> None:
    module = f"mig{uuid.uuid4().hex[:8]}"
    local = local_store(services, module)
    fill(local, {"fine.txt": b"ok"})
    # One file on disk, named with a backslash: the store reads that name as reports/r.csv.
    local.path("fine.txt").with_name("reports\\r.csv").write_bytes(b"a,b\n")

    done = migrate_files(services, modules=[module])

    assert sorted(done.moved) == [f"{module}/fine.txt", f"{module}/reports/r.csv"] and done.refused == []
    grid = grid_store(services, module)
    assert grid.open("reports/r.csv").read() == "a,b\n" and grid.open("reports\\r.csv").read() == "a,b\n"
    assert grid.listdir() == ["fine.txt", "reports"] and grid.listdir("reports") == ["r.csv"]
    assert migrate_files(services, modules=[module]).already_there == [f"{module}/fine.txt", f"{module}/reports/r.csv"]
