"""A module's file store: files on disk, expiry times in the tests' real Redis."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.errors import ArgumentError, ReadOnlyError
from tasks.ops.embedded import EmbeddedRedis
from tasks.storage.fs import FileStore, ReadOnlyFileStore
from tasks.storage.keys import Keys

DAY = 86400


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def fs(tmp_path: Path, redis_client: redis.Redis) -> FileStore:
    return FileStore(tmp_path / "files", f"module_{uuid.uuid4().hex}", "/fs/", redis_client, Keys())


def write(fs: FileStore, filename: str, text: str = "data") -> None:
    with fs.open(filename, "w") as f:
        f.write(text)


def read(fs: FileStore, filename: str) -> str:
    with fs.open(filename) as f:
        return str(f.read())


# Files and folders -------------------------------------------------------------------
def test_a_written_file_can_be_read_back(fs: FileStore) -> None:
    write(fs, "notes.txt", "hello")

    assert fs.exists("notes.txt")
    assert read(fs, "notes.txt") == "hello"


def test_a_file_written_in_folders_is_stored_under_the_module_root(fs: FileStore) -> None:
    write(fs, "reports/2024/grades.csv", "a,b\n1,2\n")

    assert read(fs, "reports/2024/grades.csv") == "a,b\n1,2\n"
    assert (fs.root / "reports" / "2024" / "grades.csv").read_text() == "a,b\n1,2\n"
    assert fs.exists("reports/2024/grades.csv")
    assert fs.exists("reports")


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
    assert not (fs.root / "a.txt").exists()


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
    assert not (fs.root / "due.txt").exists()
    assert not (fs.root / "reports" / "due.csv").exists()
    assert (fs.root / "later.txt").exists()
    assert (fs.root / "never.txt").exists()
    assert fs.sweep() == []


def test_sweep_deletes_an_expired_folder(fs: FileStore) -> None:
    write(fs, "reports/a.csv")
    fs.expire("reports", -1)

    assert fs.sweep() == ["reports"]
    assert not (fs.root / "reports").exists()


def test_expiry_is_kept_per_module(fs: FileStore, tmp_path: Path, redis_client: redis.Redis) -> None:
    other = FileStore(tmp_path / "files", f"module_{uuid.uuid4().hex}", "/fs", redis_client, Keys())
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
        fs.path(filename)
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
        fs.path(filename)
    with pytest.raises(ArgumentError, match="holds a control character"):
        fs.open(filename, "w")
    for refused in (fs.exists, fs.remove, fs.get_url):
        with pytest.raises(ArgumentError):
            refused(filename)
    assert not fs.root.exists() or not any(fs.root.rglob("*"))  # nothing was created
    assert fs.path("tüt é.txt").name == "tüt é.txt"  # printable text is fine


def test_a_file_named_with_a_control_character_before_they_were_refused_is_hidden_and_swept(
    fs: FileStore, redis_client: redis.Redis
) -> None:
    write(fs, "reports/kept.csv")
    (fs.root / "reports" / "old\rname.csv").write_text("data")  # written before the rule held
    assert fs.listdir("reports") == ["kept.csv"]  # it cannot be opened: not listed
    redis_client.zadd(f"insights:fs:expiry:{fs.module}", {"reports/old\rname.csv": 0})
    assert fs.sweep() == ["reports/old\rname.csv"]
    assert not (fs.root / "reports" / "old\rname.csv").exists() and fs.listdir("reports") == ["kept.csv"]


def test_removing_a_folder_is_refused_unless_asked_for(fs: FileStore) -> None:
    write(fs, "reports/a.csv")
    write(fs, "reports/deep/b.csv")
    with pytest.raises(ArgumentError, match="'reports' is a folder"):
        fs.remove("reports")
    with pytest.raises(ArgumentError, match="is a folder"):
        fs.remove("reports/deep/")

    assert read(fs, "reports/a.csv") == read(fs, "reports/deep/b.csv") == "data"
    fs.remove("reports", recursive=True)
    assert not (fs.root / "reports").exists()


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
