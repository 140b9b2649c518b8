"""/fs answers stored files streamed, with validators, conditional GET and byte ranges (web/files.py);
and a file store on GridFS is one store for every host of a deployment."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.http import http_date

from config.settings import Settings
from tasks.app import Insights, create_insights
from tasks.schedule import sweep
from web.app import create_app
from web.files import BLOCK, UNSATISFIABLE, parse_range

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def web(insights: Insights) -> FlaskClient:
    """The web app over the session's deployment (no worker needed: /fs reads the store itself)."""
    return create_app(insights).test_client()


@pytest.fixture
def stored(insights: Insights) -> Iterator[str]:
    """A file of 10,240 bytes in the grades module's store; its URL (an attachment: not an image)."""
    folder = f"files-{uuid.uuid4().hex}"
    store = insights.services.fs("grades")
    with store.open(f"{folder}/data.bin", "wb") as f:
        f.write(DATA)
    yield f"/fs/grades/{folder}/data.bin"
    store.remove(folder, recursive=True)


def test_a_file_is_served_with_validators_and_cache_control(web: FlaskClient, stored: str) -> None:
    response = web.get(stored)

    assert response.status_code == 200 and response.data == DATA
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["ETag"].startswith('"') and len(response.headers["ETag"]) > 2
    assert response.headers["Last-Modified"].endswith(" GMT")
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Security-Policy"] == "sandbox"  # the /fs protections stay
    assert response.headers["Content-Disposition"] == "attachment; filename=data.bin"


def test_a_big_file_is_streamed_in_blocks(web: FlaskClient, insights: Insights) -> None:
    data = bytes(range(256)) * 12_000  # 3 MB, twelve GridFS chunks
    store = insights.services.fs("grades")
    name = f"big-{uuid.uuid4().hex}.png"
    with store.open(name, "wb") as f:
        f.write(data)
    try:
        response = web.get(f"/fs/grades/{name}", buffered=False)
        assert response.is_streamed and response.status_code == 200
        blocks = list(response.response)
        response.close()
        assert len(blocks) >= len(data) // BLOCK and max(len(b) for b in blocks) <= BLOCK
        assert b"".join(blocks) == data
    finally:
        store.remove(name)


def test_a_matching_if_none_match_is_304_without_a_body(web: FlaskClient, stored: str) -> None:
    first = web.get(stored)
    etag = first.headers["ETag"]

    for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = web.get(stored, headers={"If-None-Match": condition})
        assert again.status_code == 304 and again.data == b"", condition
        assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "private, no-cache"
    assert web.get(stored, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_if_modified_since_is_304_until_the_file_changes(web: FlaskClient, stored: str) -> None:
    modified = web.get(stored).headers["Last-Modified"]

    assert web.get(stored, headers={"If-Modified-Since": modified}).status_code == 304
    assert web.get(stored, headers={"If-Modified-Since": http_date(time.time() + 3600)}).status_code == 304
    assert web.get(stored, headers={"If-Modified-Since": http_date(time.time() - 3600)}).status_code == 200
    assert web.get(stored, headers={"If-Modified-Since": "not a date"}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    stale = {"If-None-Match": '"stale"', "If-Modified-Since": modified}
    assert web.get(stored, headers=stale).status_code == 200


def test_rewriting_a_file_changes_its_etag(web: FlaskClient, stored: str, insights: Insights) -> None:
    etag = web.get(stored).headers["ETag"]
    with insights.services.fs("grades").open(stored.removeprefix("/fs/grades/"), "wb") as f:
        f.write(b"new content")

    response = web.get(stored, headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.data == b"new content"
    assert response.headers["ETag"] != etag


def test_if_match_that_fails_is_412(web: FlaskClient, stored: str) -> None:
    etag = web.get(stored).headers["ETag"]

    assert web.get(stored, headers={"If-Match": etag}).status_code == 200
    failed = web.get(stored, headers={"If-Match": '"stale"'})
    assert failed.status_code == 412 and "If-Match" in failed.get_json()["error"]
    old = {"If-Unmodified-Since": http_date(time.time() - 3600)}
    assert web.get(stored, headers=old).status_code == 412


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(DATA) - 1),
        ("bytes=-100", len(DATA) - 100, len(DATA) - 1),
        ("bytes=10000-99999", 10000, len(DATA) - 1),  # past the end: up to it
        ("bytes=-99999", 0, len(DATA) - 1),  # a suffix longer than the file: all of it
        ("BYTES = 5-5", 5, 5),
        ("bytes=7-7, ", 7, 7),  # empty list elements are allowed
    ],
)
def test_a_single_range_is_206_with_content_range(
    web: FlaskClient, stored: str, header: str, start: int, end: int
) -> None:
    response = web.get(stored, headers={"Range": header})

    assert response.status_code == 206, header
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.data == DATA[start : end + 1]
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_json(web: FlaskClient, stored: str, header: str) -> None:
    response = web.get(stored, headers={"Range": header})

    assert response.status_code == 416, header
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert "past the end" in response.get_json()["error"]


MALFORMED = [
    "bytes=abc",
    "bytes=5-2",  # last before first: invalid
    "items=0-5",
    "bytes 0-5",
    "bytes=",
    "bytes=0-5-7",
    "bytes=" + "9" * 30 + "-",  # more digits than any file has bytes
    "bytes=" + "1-2," * 100,  # a header longer than 200 characters
    "bytes=\u0661-\u0662",  # Arabic-Indic digits are not digits here
    "bytes=--5",
]


@pytest.mark.parametrize("header", MALFORMED)
def test_a_malformed_range_is_ignored(web: FlaskClient, stored: str, header: str) -> None:
    response = web.get(stored, headers={"Range": header})

    assert response.status_code == 200, header
    assert response.data == DATA and "Content-Range" not in response.headers


def test_several_ranges_are_answered_with_the_whole_file(web: FlaskClient, stored: str) -> None:
    for header in ("bytes=0-1,5-9", "bytes=0-0,0-0,0-0,0-0", "bytes=99999-,100000-"):
        response = web.get(stored, headers={"Range": header})
        assert response.status_code == 200 and response.data == DATA, header


def test_if_range_serves_the_range_only_while_the_file_is_unchanged(web: FlaskClient, stored: str) -> None:
    first = web.get(stored)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]

    assert web.get(stored, headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    assert web.get(stored, headers={"Range": "bytes=0-9", "If-Range": modified}).status_code == 206
    for stale in ('"stale"', f"W/{etag}", http_date(time.time() - 3600), "garbage"):
        response = web.get(stored, headers={"Range": "bytes=0-9", "If-Range": stale})
        assert response.status_code == 200 and response.data == DATA, stale


def test_a_304_wins_over_a_range(web: FlaskClient, stored: str) -> None:
    etag = web.get(stored).headers["ETag"]
    assert web.get(stored, headers={"Range": "bytes=0-9", "If-None-Match": etag}).status_code == 304


def test_head_answers_the_headers_without_the_body(web: FlaskClient, stored: str) -> None:
    response = web.head(stored)
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Length"] == str(len(DATA)) and "ETag" in response.headers
    assert web.head(stored, headers={"Range": "bytes=0-9"}).status_code == 200  # ranges are for GET


def test_a_non_ascii_download_name_is_sent_in_both_forms(web: FlaskClient, insights: Insights) -> None:
    store = insights.services.fs("grades")
    name = f"r\u00e9sum\u00e9-{uuid.uuid4().hex[:6]}.csv"
    with store.open(name, "wb") as f:
        f.write(b"a,b\n")
    try:
        disposition = web.get(f"/fs/grades/{name}").headers["Content-Disposition"]
        assert (
            disposition.startswith("attachment; filename=resume-")
            and "filename*=UTF-8''r%C3%A9sum%C3%A9-" in disposition
        )
    finally:
        store.remove(name)


def test_parse_range_reads_only_single_well_formed_byte_ranges() -> None:
    assert parse_range("bytes=0-0", 1) == (0, 0)
    assert parse_range("bytes=0-", 0) is UNSATISFIABLE
    assert parse_range("bytes=-1", 0) is UNSATISFIABLE
    assert parse_range("bytes=1-", 1) is UNSATISFIABLE
    assert parse_range("bytes=0-1,2-3", 10) is None
    assert parse_range("bytes=+1-2", 10) is None


# Two hosts, one store ------------------------------------------------------------------------
def host(settings: Settings, data_dir: Path, backend: str) -> Insights:
    """A second host's view of the deployment: its own disk, the same Redis and MongoDB."""
    return create_insights(
        dataclasses.replace(settings, data_dir=data_dir, fs_root=data_dir / "files", fs_backend=backend)  # type: ignore[arg-type]
    )


def test_a_file_written_on_one_host_is_served_by_another_and_a_sweep_on_one_removes_it_for_both(
    settings: Settings, tmp_path: Path
) -> None:
    first, second = host(settings, tmp_path / "a", "gridfs"), host(settings, tmp_path / "b", "gridfs")
    try:
        name = f"shared/{uuid.uuid4().hex}.png"
        with first.services.fs("grades").open(name, "wb") as f:
            f.write(b"\x89PNG written on host a")
        url = first.services.fs("grades").get_url(name)
        web_a, web_b = create_app(first).test_client(), create_app(second).test_client()

        served = web_b.get(url)
        assert served.status_code == 200 and served.data == b"\x89PNG written on host a"
        assert served.mimetype == "image/png" and served.headers["ETag"] == web_a.get(url).headers["ETag"]
        assert second.services.fs("grades").listdir("shared") == [name.split("/")[1]]

        first.services.fs("grades").expire(name, -1)
        assert sweep(first) >= 1  # the sweeper runs on one host
        for web, insights in ((web_a, first), (web_b, second)):
            assert web.get(url).status_code == 404
            assert insights.services.fs("grades").backend.info(name) is None  # gone, not just hidden
        assert name not in second.services.fs("grades").sweep()  # nothing left for another host's sweep
    finally:
        first.services.close()
        second.services.close()


def test_a_local_store_is_one_hosts_own(settings: Settings, tmp_path: Path) -> None:
    first, second = host(settings, tmp_path / "a", "local"), host(settings, tmp_path / "b", "local")
    try:
        name = f"{uuid.uuid4().hex}.png"
        with first.services.fs("grades").open(name, "wb") as f:
            f.write(b"\x89PNG")
        url = first.services.fs("grades").get_url(name)
        assert create_app(first).test_client().get(url).status_code == 200
        assert create_app(second).test_client().get(url).status_code == 404  # what INSIGHTS_FS_BACKEND=gridfs fixes
        first.services.fs("grades").remove(name)
    finally:
        first.services.close()
        second.services.close()
