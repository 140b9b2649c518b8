"""Calling another Insights server's views and queries over its HTTP API (stdlib ``urllib``).

``RemoteBackend`` is a backend of the Python client (tasks/client.py) and of the injected
``query`` / ``view`` objects: ``Insights.remotes`` holds one per server of ``INSIGHTS_REMOTES``.
Its token goes in the ``Authorization`` header only: never in a URL, a repr or an error. Redirects
are refused (urllib would carry the header to whatever host they name), a token is refused over
plain ``http://`` to a host that is not loopback, and an answer is read up to a bounded size.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from email.message import Message
from typing import IO, Any, NoReturn
from urllib.parse import quote

from config.settings import Settings, token_over_plain_http
from tasks.codec.serialization import dumps_plain
from tasks.core.functions import FunctionInfo

KINDS = ("view", "query")

# The largest answer read by default: the deployment's largest accepted request body (its default).
MAX_RESPONSE_BYTES: int = Settings.max_request_bytes


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


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: following one would send the ``Authorization`` header to its host."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> NoReturn:
        """Raise :class:`RemoteError` naming the redirect instead of following it."""
        fp.close()
        raise RemoteError(
            code,
            f"the server redirects to {newurl}; redirects are not followed (the token would go along): "
            "configure the final URL instead",
            req.full_url,
        )


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class RemoteBackend:
    """The functions of an Insights server, called over its HTTP API (stdlib ``urllib``).

    The schema is read once, on first use (``refresh()`` reads it again). A call is
    ``POST <base_url>/<kind>/<name>`` with the arguments as a JSON object; a JSON answer is
    decoded, a text or HTML one returned as ``str``. HTTP errors raise :class:`RemoteError`
    with the server's message (400 bad arguments, 401/403 token, 404 unknown name,
    500 the function failed, 504 time-out); an unreachable server raises ``ConnectionError``
    and a slow one ``TimeoutError``. A redirect raises :class:`RemoteError` (it is not followed),
    as does an answer longer than ``max_response_bytes``. A token with a plain ``http://`` URL to a
    host that is not loopback is a ``ValueError``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if token_over_plain_http(base_url, token):
            raise ValueError(
                f"{base_url}: a token is only sent over https:// (or plain http:// to a loopback host); "
                "it would cross the network unencrypted"
            )
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
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
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read(self.max_response_bytes + 1)
                if len(raw) > self.max_response_bytes:
                    raise RemoteError(
                        response.status,
                        f"the answer is larger than {self.max_response_bytes} bytes (the limit: "
                        "INSIGHTS_MAX_REQUEST_BYTES)",
                        url,
                    )
                return _decode(raw, response.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            with exc:
                message = _error_message(exc.read(self.max_response_bytes), exc.reason)
                raise RemoteError(exc.code, message, url) from None
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
