"""Answering a stored file (``/fs``): streamed in blocks, with validators, conditional requests
and single byte ranges as RFC 9110 defines them.

- ``ETag`` (strong: it changes whenever the file is written again), ``Last-Modified``,
  ``Cache-Control: private, no-cache`` (a cache keeps the file but asks again each time; never a
  shared cache, since files may need a token), ``Accept-Ranges: bytes``.
- Conditions in the RFC's order: ``If-Match`` / ``If-Unmodified-Since`` (412), then
  ``If-None-Match`` / ``If-Modified-Since`` (304, with the validators and no body).
- ``Range`` on GET only, honoured when ``If-Range`` (if sent) still matches: one satisfiable range
  is 206 with ``Content-Range``; one unsatisfiable range is 416 with ``Content-Range: bytes */size``.
  **Several ranges are answered 200 with the whole file** (no multipart/byteranges: a request
  for many small or overlapping ranges costs no more than the file). A malformed ``Range`` (another
  unit, bad syntax, ``last < first``, numbers over 19 digits, a header over 200 characters) is
  ignored, as RFC 9110 says: 200 with the whole file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO
from urllib.parse import quote

from flask import Response, request
from werkzeug.datastructures import Headers
from werkzeug.http import http_date, parse_date, parse_etags

from tasks.storage.fs import FileInfo
from web.errors import ApiError

BLOCK = 64 * 1024
CACHE_CONTROL = "private, no-cache"
MAX_RANGE_HEADER = 200
_RANGE_SPEC = re.compile(r"([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19})")


class Unsatisfiable:
    """A single byte range that starts at or past the end of the file."""


UNSATISFIABLE = Unsatisfiable()


def file_response(binary: IO[bytes], info: FileInfo, mimetype: str, download_name: str | None = None) -> Response:
    """The response for a stored file opened as ``binary``, whose facts are ``info``; closes ``binary``.

    ``download_name``: send it as an attachment under that name, else inline."""
    headers = validators(info)
    status = condition_status(info)
    if status is not None:
        binary.close()
        if status == 304:
            unchanged = Response(status=304, headers=headers)
            unchanged.headers.remove("Content-Type")
            return unchanged
        raise ApiError(412, "the file changed since the version your request names (If-Match / If-Unmodified-Since)")
    byte_range = requested_range(info) if request.method == "GET" else None
    if isinstance(byte_range, Unsatisfiable):
        binary.close()
        raise ApiError(
            416,
            f"the range asked for starts past the end of the file ({info.size} bytes)",
            headers={"Content-Range": f"bytes */{info.size}"},
        )
    start, length, status = 0, info.size, 200
    if byte_range is not None:
        start, end = byte_range
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    if download_name is not None:
        _attachment(headers, download_name)
    response = Response(_blocks(binary, start, length), status=status, headers=headers, mimetype=mimetype)
    response.direct_passthrough = True
    response.content_length = length
    response.call_on_close(binary.close)  # also when nothing was read (HEAD, a client gone)
    return response


def validators(info: FileInfo) -> Headers:
    """ETag, Last-Modified, Cache-Control and Accept-Ranges of a file."""
    return Headers(
        {
            "ETag": f'"{info.etag}"',
            "Last-Modified": http_date(_seconds(info)),
            "Cache-Control": CACHE_CONTROL,
            "Accept-Ranges": "bytes",
        }
    )


def condition_status(info: FileInfo) -> int | None:
    """412 or 304 when the request's conditions say so (RFC 9110 §13.2.2), else None."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        if not _matches(if_match, info, weak=False):
            return 412
    else:
        since = parse_date(request.headers.get("If-Unmodified-Since"))
        if since is not None and _seconds(info) > since:
            return 412
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return 304 if _matches(if_none_match, info, weak=True) else None
    since = parse_date(request.headers.get("If-Modified-Since"))
    if since is not None and _seconds(info) <= since:
        return 304
    return None


def requested_range(info: FileInfo) -> tuple[int, int] | Unsatisfiable | None:
    """The one byte range (first, last: inclusive) the request asks for, ``UNSATISFIABLE``, or None
    (no Range, a malformed or multiple one, or an ``If-Range`` that no longer matches: whole file)."""
    header = request.headers.get("Range")
    if header is None or not _if_range_holds(info):
        return None
    return parse_range(header, info.size)


def parse_range(header: str, size: int) -> tuple[int, int] | Unsatisfiable | None:
    """A ``Range`` header against a file of ``size`` bytes: (first, last), ``UNSATISFIABLE``, or None to ignore it."""
    if len(header) > MAX_RANGE_HEADER:
        return None
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    ranges = [spec.strip() for spec in specs.split(",") if spec.strip()]
    if len(ranges) != 1:  # none, or several: the whole file
        return None
    found = _RANGE_SPEC.fullmatch(ranges[0])
    if found is None:
        return None
    first, last, suffix = found.groups()
    if suffix is not None:
        length = int(suffix)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(size - length, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        return UNSATISFIABLE
    return start, min(int(last), size - 1) if last else size - 1


def _if_range_holds(info: FileInfo) -> bool:
    condition = request.headers.get("If-Range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return condition == f'"{info.etag}"'  # a strong comparison; a weak tag never matches
    since = parse_date(condition)
    return since is not None and since == _seconds(info)


def _matches(header: str, info: FileInfo, weak: bool) -> bool:
    tags = parse_etags(header)
    if tags.star_tag:
        return True
    return tags.contains_weak(info.etag) if weak else tags.contains(info.etag)


def _seconds(info: FileInfo) -> datetime:
    """The modification time at HTTP's resolution (whole seconds)."""
    return datetime.fromtimestamp(int(info.mtime), UTC)


def _blocks(binary: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``binary`` from ``start``, a block at a time."""
    try:
        if start:
            binary.seek(start)
        while length > 0:
            block = binary.read(min(BLOCK, length))
            if not block:
                break
            length -= len(block)
            yield block
    finally:
        binary.close()


def _attachment(headers: Headers, name: str) -> None:
    """``Content-Disposition: attachment`` with ``name`` (and its UTF-8 form when not ASCII)."""
    try:
        name.encode("ascii")
        names = {"filename": name}
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        names = {"filename": simple, "filename*": f"UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"}
    headers.set("Content-Disposition", "attachment", **names)
