"""Calling another Insights server's views and queries over its HTTP API (stdlib ``urllib``).

``RemoteBackend`` is a backend of the Python client (tasks/client.py) and of the injected
``query`` / ``view`` objects: ``Insights.remotes`` holds one per server of ``INSIGHTS_REMOTES``.
Its token goes in the ``Authorization`` header only: never in a URL, a repr or an error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from tasks.codec.serialization import dumps_plain
from tasks.core.functions import FunctionInfo

KINDS = ("view", "query")


def by_name(infos: Iterable[FunctionInfo]) -> dict[str, FunctionInfo]:
    """Every info keyed by each of its names (primary name and aliases)."""
    return {name: info for info in infos for name in info.names}


class RemoteError(Exception):
    """An Insights server answered with an HTTP error; ``message`` is its ``error`` text."""

    def __init__(self, status: int, message: str, url: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}" + (f" ({url})" if url else ""))
        self.status = status
        self.message = message
        self.url = url


class RemoteBackend:
    """The functions of an Insights server, called over its HTTP API (stdlib ``urllib``).

    The schema is read once, on first use (``refresh()`` reads it again). A call is
    ``POST <base_url>/<kind>/<name>`` with the arguments as a JSON object; a JSON answer is
    decoded, a text or HTML one returned as ``str``. HTTP errors raise :class:`RemoteError`
    with the server's message (400 bad arguments, 401/403 token, 404 unknown name,
    500 the function failed, 504 time-out); an unreachable server raises ``ConnectionError``
    and a slow one ``TimeoutError``.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._schema: list[dict[str, Any]] | None = None

    def refresh(self) -> None:
        """Forget the cached schema; the next lookup reads ``/schema`` again."""
        self._schema = None

    def schema(self) -> list[dict[str, Any]]:
        """The server's ``/schema`` entries (cached)."""
        if self._schema is None:
            entries = self._request("GET", "/schema")
            if not isinstance(entries, list):
                raise RemoteError(200, f"/schema answered {type(entries).__name__}, not a list", self.base_url)
            self._schema = entries
        return self._schema

    def functions(self, kind: str) -> dict[str, FunctionInfo]:
        """The server's functions of ``kind``, from its schema."""
        return by_name(FunctionInfo.from_schema(e) for e in self.schema() if e.get("class") == kind)

    def call(self, kind: str, name: str, kwargs: dict[str, Any]) -> Any:
        """Run the function on the server and return its decoded answer."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return self._request("POST", f"/{kind}/{quote(name, safe='')}", kwargs)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = dumps_plain(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _decode(response.read(), response.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            with exc:
                raise RemoteError(exc.code, _error_message(exc.read(), exc.reason), url) from None
        except TimeoutError:
            raise TimeoutError(f"{url} did not answer within {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"{url} did not answer within {self.timeout:g} s") from None
            raise ConnectionError(f"cannot reach {url}: {exc.reason}") from None

    def __repr__(self) -> str:
        return f"RemoteBackend({self.base_url!r})"


def _decode(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8")
    return json.loads(text) if content_type == "application/json" else text


def _error_message(raw: bytes, reason: object) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip() or str(reason)
    return str(body.get("error", reason)) if isinstance(body, dict) else str(reason)
