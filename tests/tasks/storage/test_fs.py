"""A module's file store on both backends (GridFS in the tests' nx-27017, local disk), expiry
times in the tests' real Redis."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
import redis

from config.settings import ROOT
from tasks.errors import ArgumentError, ReadOnlyError
from tasks.ops.embedded import EmbeddedMongo, EmbeddedRedis
from tasks.storage.fs import SCRATCH_FOLDER, FileStore, GridBackend, LocalBackend, ReadOnlyFileStore
from tasks.storage.keys import Keys

DAY = 86400


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def mongo_client(mongo_server: EmbeddedMongo) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.url)
    yield client
    client.close()


def make_store(
    kind: str, module: str, root: Path, redis_client: redis.Redis, mongo_client: pymongo.MongoClient[dict[str, Any]]
) -> FileStore:
    """A file store of ``module`` on ``kind``: ``gridfs`` (a database of its own) or ``local`` (under ``root``)."""
    if kind == "local":
        backend: Any = LocalBackend(root / module, root / SCRATCH_FOLDER)
    else:
        backend = GridBackend(mongo_client[f"fs_{module}"])
        backend.ensure_indexes()
    return FileStore(backend, module, "/fs/", redis_client, Keys())


@pytest.fixture(params=["gridfs", "local"])
def fs(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_client: redis.Redis,
    mongo_client: pymongo.MongoClient[dict[str, Any]],
) -> Iterator[FileStore]:
    module = f"module_{uuid.uuid4().hex}"
    yield make_store(request.param, module, tmp_path / "files", redis_client, mongo_client)
    if request.param == "gridfs":
        mongo_client.drop_database(f"fs_{module}")


@pytest.fixture
def local_fs(tmp_path: Path, redis_client: redis.Redis, mongo_client: pymongo.MongoClient[dict[str, Any]]) -> FileStore:
    return make_store("local", f"module_{uuid.uuid4().hex}", tmp_path / "files", redis_client, mongo_client)


def write(fs: FileStore, filename: str, text: str = "data") -> None:
    with fs.open(filename, "w") as f:
        f.write(text)


def read(fs: FileStore, filename: str) -> str:
    with fs.open(filename) as f:
        return str(f.read())


def stored(fs: FileStore, name: str) -> bool:
    """Whether the backend holds ``name`` (a file or folder), expired or not."""
    return fs.backend.info(name) is not None or fs.backend.is_folder(name)


def plant(fs: FileStore, name: str, data: bytes = b"data") -> None:
    """Put a file straight into the backend, past the store's name checks (as written before they held)."""
    scratch = fs.backend.scratch()
    scratch.write_bytes(data)
    fs.backend.commit(name, scratch)


# Files and folders -------------------------------------------------------------------
def test_a_written_file_can_be_read_back(fs: FileStore) -> None:
    write(fs, "notes.txt", "hello")

    assert fs.exists("notes.txt")
    assert read(fs, "notes.txt") == "hello"


def test_a_file_written_in_folders_is_stored_in_them(fs: FileStore) -> None:
    write(fs, "reports/2024/grades.csv", "a,b\n1,2\n")

    assert read(fs, "reports/2024/grades.csv") == "a,b\n1,2\n"
    assert fs.exists("reports/2024/grades.csv")
    assert fs.exists("reports") and fs.exists("reports/2024")
    assert fs.listdir() == ["reports"] and fs.listdir("reports") == ["2024"]


def test_a_local_store_keeps_files_under_the_module_root(local_fs: FileStore) -> None:
    write(local_fs, "reports/2024/grades.csv", "a,b\n1,2\n")

    assert (local_fs.path("reports") / "2024" / "grades.csv").read_text() == "a,b\n1,2\n"
    assert local_fs.path("reports/2024/grades.csv").parent.parent.parent.name == local_fs.module


def test_binary_files_round_trip(fs: FileStore) -> None:
    with fs.open("image.png", "wb") as f:
        f.write(b"\x89PNG\x00\xff")
    with fs.open("image.png", "rb") as f:
        assert f.read() == b"\x89PNG\x00\xff"


def test_a_missing_file_does_not_exist_and_cannot_be_read(fs: FileStore) -> None:
    assert not fs.exists("missing.txt")
    with pytest.raises(FileNotFoundError):
        read(fs, "missing.txt")


def test_removing_a_file_deletes_it(fs: FileStore) -> None:
    write(fs, "a.txt")
    fs.remove("a.txt")

    assert not fs.exists("a.txt")
    assert not stored(fs, "a.txt")


def test_removing_a_missing_file_is_harmless(fs: FileStore) -> None:
    fs.remove("never-written.txt")


def test_listdir_lists_a_folder(fs: FileStore) -> None:
    write(fs, "b.txt")
    write(fs, "a.txt")
    write(fs, "reports/c.csv")

    assert fs.listdir() == ["a.txt", "b.txt", "reports"]
    assert fs.listdir("reports") == ["c.csv"]
    assert fs.listdir("reports/") == ["c.csv"]
    assert fs.listdir("nothing-here") == []


def test_listdir_of_a_new_store_is_empty(fs: FileStore) -> None:
    assert fs.listdir() == []


# Expiry ------------------------------------------------------------------------------
def test_a_negative_expiry_expires_a_file_at_once(fs: FileStore) -> None:
    write(fs, "old.txt")
    fs.expire("old.txt", -1)

    assert not fs.exists("old.txt")
    with pytest.raises(FileNotFoundError, match="has expired"):
        read(fs, "old.txt")


def test_listdir_hides_expired_files(fs: FileStore) -> None:
    for name in ("live.txt", "old.txt", "reports/live.csv", "reports/old.csv"):
        write(fs, name)
    fs.expire("old.txt", -1)
    fs.expire("reports/old.csv", -1)

    assert fs.listdir() == ["live.txt", "reports"]
    assert fs.listdir("reports") == ["live.csv"]


def test_a_future_expiry_keeps_the_file_until_then(fs: FileStore) -> None:
    write(fs, "a.txt")
    fs.expire("a.txt", 3600)

    assert fs.exists("a.txt")
    assert read(fs, "a.txt") == "data"


def test_days_and_seconds_add_up(fs: FileStore) -> None:
    write(fs, "a.txt")
    fs.expire("a.txt", -60, days=1)
    now = time.time()

    assert fs.sweep(now + DAY - 120) == []
    assert fs.sweep(now + DAY + 1) == ["a.txt"]


def test_expires_false_cancels_an_expiry(fs: FileStore) -> None:
    write(fs, "a.txt")
    fs.expire("a.txt", -1)
    fs.expire("a.txt", 0, expires=False)

    assert fs.exists("a.txt")
    assert fs.sweep(time.time() + 365 * DAY) == []


def test_sweep_deletes_exactly_the_due_files(fs: FileStore) -> None:
    for name in ("due.txt", "reports/due.csv", "later.txt", "never.txt"):
        write(fs, name)
    fs.expire("due.txt", -1)
    fs.expire("reports/due.csv", -1)
    fs.expire("later.txt", 3600)

    assert sorted(fs.sweep()) == ["due.txt", "reports/due.csv"]
    assert not stored(fs, "due.txt")
    assert not stored(fs, "reports/due.csv")
    assert stored(fs, "later.txt")
    assert stored(fs, "never.txt")
    assert fs.sweep() == []


def test_sweep_deletes_an_expired_folder(fs: FileStore) -> None:
    write(fs, "reports/a.csv")
    fs.expire("reports", -1)

    assert fs.sweep() == ["reports"]
    assert not stored(fs, "reports") and not stored(fs, "reports/a.csv")


def test_expiry_is_kept_per_module(
    fs: FileStore, tmp_path: Path, redis_client: redis.Redis, mongo_client: pymongo.MongoClient[dict[str, Any]]
) -> None:
    kind = "local" if isinstance(fs.backend, LocalBackend) else "gridfs"
    other = make_store(kind, f"module_{uuid.uuid4().hex}", tmp_path / "files", redis_client, mongo_client)
    write(fs, "a.txt")
    write(other, "a.txt")
    fs.expire("a.txt", -1)

    assert not fs.exists("a.txt")
    assert other.exists("a.txt")
    assert other.sweep() == []


def test_a_file_written_again_after_it_expired_is_live(fs: FileStore) -> None:
    write(fs, "report.csv", "old")
    fs.expire("report.csv", -1)

    write(fs, "report.csv", "new")

    assert fs.exists("report.csv")
    assert read(fs, "report.csv") == "new"
    assert fs.sweep() == []


def test_appending_to_an_expired_file_starts_a_new_file(fs: FileStore) -> None:
    write(fs, "log.txt", "old\n")
    fs.expire("log.txt", -1)

    with fs.open("log.txt", "a") as f:
        f.write("new\n")

    assert read(fs, "log.txt") == "new\n"


# URLs and paths ----------------------------------------------------------------------
def test_get_url_is_the_prefix_module_and_path(fs: FileStore) -> None:
    assert fs.get_url("reports/grades.csv") == f"/fs/{fs.module}/reports/grades.csv"
    assert fs.get_url("./reports//grades.csv") == f"/fs/{fs.module}/reports/grades.csv"


def test_get_url_quotes_special_characters(fs: FileStore) -> None:
    assert fs.get_url("my report 100%?#ü.csv") == f"/fs/{fs.module}/my%20report%20100%25%3F%23%C3%BC.csv"


OUTSIDE = ["../x", "/etc/passwd", "//", "//etc/passwd", "a/../../b", "..", "a\x00b", "", "..\\x"]


@pytest.mark.parametrize("filename", OUTSIDE)
def test_a_path_outside_the_store_is_refused(fs: FileStore, filename: str) -> None:
    with pytest.raises(ArgumentError, match="not a relative path inside the module's store"):
        fs.name(filename)
    with pytest.raises(ArgumentError):
        fs.open(filename, "w")
    with pytest.raises(ArgumentError):
        fs.remove(filename)
    with pytest.raises(ArgumentError):
        fs.get_url(filename)


CONTROL = ["cr\rname.txt", "lf\nname.txt", "tab\tname", "esc\x1b[31m.txt", "del\x7f", "nel\x85name", "dir\r/a.txt"]


@pytest.mark.parametrize("filename", CONTROL)
def test_a_file_name_with_a_control_character_is_refused(fs: FileStore, filename: str) -> None:
    with pytest.raises(ArgumentError, match="holds a control character"):
        fs.name(filename)
    with pytest.raises(ArgumentError, match="holds a control character"):
        fs.open(filename, "w")
    for refused in (fs.exists, fs.remove, fs.get_url):
        with pytest.raises(ArgumentError):
            refused(filename)
    assert not list(fs.backend.files()) and fs.backend.children("") == []  # nothing was created
    assert fs.name("tüt é.txt") == "tüt é.txt"  # printable text is fine


def test_a_file_named_with_a_control_character_before_they_were_refused_is_hidden_and_swept(
    fs: FileStore, redis_client: redis.Redis
) -> None:
    write(fs, "reports/kept.csv")
    plant(fs, "reports/old\rname.csv")  # written before the rule held
    assert fs.listdir("reports") == ["kept.csv"]  # it cannot be opened: not listed
    redis_client.zadd(f"insights:fs:expiry:{fs.module}", {"reports/old\rname.csv": 0})
    assert fs.sweep() == ["reports/old\rname.csv"]
    assert not stored(fs, "reports/old\rname.csv") and fs.listdir("reports") == ["kept.csv"]


def test_removing_a_folder_is_refused_unless_asked_for(fs: FileStore) -> None:
    write(fs, "reports/a.csv")
    write(fs, "reports/deep/b.csv")
    with pytest.raises(ArgumentError, match="'reports' is a folder"):
        fs.remove("reports")
    with pytest.raises(ArgumentError, match="is a folder"):
        fs.remove("reports/deep/")

    assert read(fs, "reports/a.csv") == read(fs, "reports/deep/b.csv") == "data"
    fs.remove("reports", recursive=True)
    assert not stored(fs, "reports") and not stored(fs, "reports/deep/b.csv") and not fs.exists("reports")


def test_a_read_only_store_reads_lists_and_links(fs: FileStore) -> None:
    write(fs, "plots/a.txt", "hello")
    replica = ReadOnlyFileStore(fs)

    with replica.open("plots/a.txt") as f:
        assert f.read() == "hello"
    with replica.open("plots/a.txt", "rb") as f:
        assert f.read() == b"hello"
    assert replica.exists("plots/a.txt") and not replica.exists("plots/b.txt")
    assert replica.listdir("plots") == ["a.txt"]
    assert replica.get_url("plots/a.txt") == fs.get_url("plots/a.txt")


@pytest.mark.parametrize("mode", ["w", "a", "x", "r+", "wb", "ab"])
def test_a_read_only_store_refuses_to_open_for_writing(fs: FileStore, mode: str) -> None:
    write(fs, "a.txt", "kept")
    with pytest.raises(ReadOnlyError, match=rf"open\('a.txt', '{re.escape(mode)}'\) refused: .*file store of module"):
        ReadOnlyFileStore(fs).open("a.txt", mode)
    assert read(fs, "a.txt") == "kept"


def test_a_read_only_store_refuses_remove_and_expire(fs: FileStore) -> None:
    write(fs, "a.txt", "kept")
    replica = ReadOnlyFileStore(fs)
    with pytest.raises(ReadOnlyError, match=r"remove\('a.txt'\) refused"):
        replica.remove("a.txt")
    with pytest.raises(ReadOnlyError, match=r"expire\('a.txt'\) refused"):
        replica.expire("a.txt", -5)
    assert fs.exists("a.txt")


# Writing is atomic for readers ---------------------------------------------------------
def test_a_reader_sees_the_previous_file_until_the_writer_closes(fs: FileStore) -> None:
    write(fs, "report.csv", "old")
    writer = fs.open("report.csv", "w")
    writer.write("new, half")
    writer.flush()

    assert read(fs, "report.csv") == "old"
    writer.write(" and whole")
    writer.close()
    assert read(fs, "report.csv") == "new, half and whole"


def test_a_new_file_is_not_there_until_it_is_closed(fs: FileStore) -> None:
    with fs.open("plots/new.png", "wb") as f:
        f.write(b"part")
        assert not fs.exists("plots/new.png") and fs.listdir("plots") == []
    assert fs.exists("plots/new.png") and fs.listdir("plots") == ["new.png"]


def test_an_exception_while_writing_keeps_the_previous_file(fs: FileStore) -> None:
    write(fs, "a.txt", "kept")
    with pytest.raises(RuntimeError), fs.open("a.txt", "w") as f:
        f.write("half")
        raise RuntimeError("the view failed")
    with pytest.raises(RuntimeError), fs.open("b.txt", "wb") as f:
        f.write(b"half")
        raise RuntimeError("the view failed")

    assert read(fs, "a.txt") == "kept"
    assert not fs.exists("b.txt") and fs.listdir() == ["a.txt"]


CRASH = """
import os, sys
import pymongo, redis
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.tasks.storage.test_fs import make_store
kind, module, root, redis_url, mongo_url = sys.argv[2:]
fs = make_store(kind, module, Path(root), redis.Redis.from_url(redis_url), pymongo.MongoClient(mongo_url))
f = fs.open("crash.bin", "wb")
f.write(b"x" * 600_000)  # more than two GridFS chunks
f.flush()
os._exit(3)  # killed mid-write: no close, no finalizer
"""


def test_a_process_that_dies_mid_write_leaves_nothing_visible(
    fs: FileStore, tmp_path: Path, redis_server: EmbeddedRedis, mongo_server: EmbeddedMongo
) -> None:
    kind = "local" if isinstance(fs.backend, LocalBackend) else "gridfs"
    root = str(tmp_path / "files")
    args = [str(ROOT), kind, fs.module, root, redis_server.url, mongo_server.url]
    died = subprocess.run([sys.executable, "-c", CRASH, *args], capture_output=True, text=True, timeout=120)

    assert died.returncode == 3, died.stderr
    assert not fs.exists("crash.bin") and fs.listdir() == [] and not list(fs.backend.files())


# Modes and text options ----------------------------------------------------------------
def test_append_update_and_exclusive_modes_behave_like_open(fs: FileStore) -> None:
    write(fs, "log.txt", "one\n")
    with fs.open("log.txt", "a") as f:
        f.write("two\n")
    assert read(fs, "log.txt") == "one\ntwo\n"
    with fs.open("log.txt", "r+") as f:
        assert f.readline() == "one\n"
        f.seek(0)
        f.write("ONE")
    assert read(fs, "log.txt") == "ONE\ntwo\n"
    with fs.open("new.txt", "w+") as f:
        f.write("abc")
        f.seek(0)
        assert f.read() == "abc"
    with fs.open("fresh.bin", "ab") as f:  # appending to no file starts one
        f.write(b"\x00")
    assert fs.open("fresh.bin", "rb").read() == b"\x00"

    with pytest.raises(FileExistsError):
        fs.open("log.txt", "x")
    with pytest.raises(FileNotFoundError):
        fs.open("missing.txt", "r+")
    with fs.open("only-once.txt", "x") as f:
        f.write("first")
    assert read(fs, "only-once.txt") == "first"


def test_text_options_and_line_iteration_work_as_with_open(fs: FileStore) -> None:
    with fs.open("latin.txt", "w", encoding="latin-1", newline="\r\n") as f:
        f.write("caf\u00e9\nna\u00efve\n")

    assert fs.open("latin.txt", "rb").read() == b"caf\xe9\r\nna\xefve\r\n"
    with fs.open("latin.txt", encoding="latin-1") as f:
        assert list(f) == ["caf\u00e9\n", "na\u00efve\n"]
    with fs.open("latin.txt", encoding="latin-1", newline="") as f:
        assert f.readline() == "caf\u00e9\r\n"


def test_a_file_cannot_replace_a_folder_nor_live_under_a_file(fs: FileStore) -> None:
    write(fs, "reports/a.csv", "a")
    write(fs, "plain.txt", "p")

    with pytest.raises(IsADirectoryError):
        write(fs, "reports", "x")
    with pytest.raises(OSError):  # NotADirectoryError (GridFS) or FileExistsError (a disk's mkdir)
        write(fs, "plain.txt/inner.txt", "x")
    with pytest.raises(IsADirectoryError):
        read(fs, "reports")
    assert read(fs, "reports/a.csv") == "a" and read(fs, "plain.txt") == "p"
    assert fs.listdir() == ["plain.txt", "reports"]


def test_big_binary_files_round_trip_across_chunks(fs: FileStore) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: five GridFS chunks
    with fs.open("big.bin", "wb") as f:
        f.write(data)
    with fs.open("big.bin", "rb") as f:
        f.seek(700_000)
        assert f.read(10) == data[700_000:700_010]
        f.seek(0)
        assert f.read() == data


# Facts about files -----------------------------------------------------------------------
def test_info_gives_size_time_and_a_tag_that_changes_when_the_file_is_written_again(fs: FileStore) -> None:
    before = time.time()
    write(fs, "a.txt", "hello")
    first = fs.info("a.txt")
    assert first is not None and first.size == 5 and before - 2 <= first.mtime <= time.time() + 2
    write(fs, "a.txt", "hello")
    second = fs.info("a.txt")
    assert second is not None and second.etag != first.etag

    binary, opened = fs.read("a.txt")
    with binary:
        assert binary.read() == b"hello" and opened == second
    assert fs.info("missing.txt") is None
    write(fs, "folder/b.txt")
    assert fs.info("folder") is None
    fs.expire("a.txt", -1)
    assert fs.info("a.txt") is None
    with pytest.raises(FileNotFoundError, match="has expired"):
        fs.read("a.txt")


def test_the_modules_of_one_deployment_do_not_see_each_others_files(
    fs: FileStore, tmp_path: Path, redis_client: redis.Redis, mongo_client: pymongo.MongoClient[dict[str, Any]]
) -> None:
    kind = "local" if isinstance(fs.backend, LocalBackend) else "gridfs"
    other = make_store(kind, f"module_{uuid.uuid4().hex}", tmp_path / "files", redis_client, mongo_client)
    write(fs, "secret.txt", "mine")

    assert not other.exists("secret.txt") and other.listdir() == [] and other.info("secret.txt") is None
    with pytest.raises(FileNotFoundError):
        read(other, "secret.txt")


def test_a_gridfs_store_has_no_local_path(fs: FileStore) -> None:
    if isinstance(fs.backend, LocalBackend):
        assert fs.path("a/b.txt") == fs.backend.root / "a" / "b.txt"
    else:
        with pytest.raises(ArgumentError, match=r"GridFS.*no local path; read and write it with fs.open"):
            fs.path("a/b.txt")


# Sweeping, once ----------------------------------------------------------------------------
def test_sweeps_running_at_once_delete_each_due_file_once(fs: FileStore) -> None:
    names = [f"due/{i}.txt" for i in range(20)]
    for name in names:
        write(fs, name)
        fs.expire(name, -1)
    results: list[list[str]] = []
    ready = threading.Barrier(3)

    def sweep() -> None:
        ready.wait()
        results.append(fs.sweep())

    sweepers = [threading.Thread(target=sweep) for _ in range(3)]
    for sweeper in sweepers:
        sweeper.start()
    for sweeper in sweepers:
        sweeper.join()

    swept = [name for result in results for name in result]
    assert sorted(swept) == sorted(names)  # every one, by exactly one sweep
    assert not any(stored(fs, name) for name in names) and fs.listdir("due") == []
    assert fs.sweep() == []


def test_deleting_what_was_written_before_a_time_keeps_a_file_written_after_it(fs: FileStore) -> None:
    write(fs, "a.txt", "old")
    taken = time.time() - 5  # a sweep took the entry before the file was written again
    fs.backend.delete("a.txt", recursive=True, written_before=taken)
    assert read(fs, "a.txt") == "old"
    fs.backend.delete("a.txt", recursive=True, written_before=time.time() + 5)
    assert not stored(fs, "a.txt")


def test_a_file_given_a_new_expiry_while_it_is_due_is_not_swept(fs: FileStore) -> None:
    write(fs, "a.txt")
    fs.expire("a.txt", -1)
    fs.expire("a.txt", 3600)  # renewed before the sweep came
    assert fs.sweep() == [] and fs.exists("a.txt")


def test_a_local_store_does_not_follow_symbolic_links_planted_in_it(local_fs: FileStore, tmp_path: Path) -> None:
    write(local_fs, "real.txt", "mine")
    secret = tmp_path / "secret.txt"
    secret.write_text("not the store's")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inner.txt").write_text("not the store's either")
    local_fs.path("leak.txt").symlink_to(secret)
    local_fs.path("linked").symlink_to(outside, target_is_directory=True)

    for name in ("leak.txt", "linked/inner.txt"):
        assert local_fs.info(name) is None and not local_fs.exists(name)
        with pytest.raises(FileNotFoundError):
            local_fs.read(name)
        with pytest.raises(FileNotFoundError):
            read(local_fs, name)
    assert not local_fs.exists("linked") and local_fs.listdir("linked") == []
    assert [name for name, _ in local_fs.backend.files()] == ["real.txt"]
    with pytest.raises(OSError):  # nor is a file written through a linked folder
        write(local_fs, "linked/new.txt", "out")
    assert not (outside / "new.txt").exists() and read(local_fs, "real.txt") == "mine"
