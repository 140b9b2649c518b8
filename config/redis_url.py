"""Redis URLs with Sentinel: what a ``sentinel://`` ``REDIS_URL`` or ``BROKER_URL`` names (docs/sentinel.md).

The form is kombu's, which Celery's result backend reads too: every Sentinel node as its own
``sentinel://`` address, separated by ``;``, the master's database and password in the *first*
address (kombu and Celery read them only there)::

    sentinel://:masterpassword@s1:26379/0;sentinel://s2:26379;sentinel://s3:26379

The master's name is ``INSIGHTS_REDIS_SENTINEL_MASTER``; the Sentinel nodes' own password, if
they require one, ``INSIGHTS_REDIS_SENTINEL_PASSWORD``. Each client (ours, kombu's, Celery's,
RedBeat's) is configured from the ``SentinelTarget`` made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from config.settings import ConfigError, Settings

SCHEME = "sentinel"
DEFAULT_PORT = 26379
EXAMPLE = "sentinel://:password@s1:26379/0;sentinel://s2:26379;sentinel://s3:26379"


@dataclass(frozen=True)
class SentinelTarget:
    """A Redis master found through Sentinel: the Sentinel nodes, the master's name, its database and credentials."""

    nodes: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the master's (and its replicas') password
    sentinel_password: str | None = None  # the Sentinel nodes' own password

    def sentinel_kwargs(self) -> dict[str, Any] | None:
        """Connection options for the Sentinel nodes themselves (None: the clients' defaults)."""
        return {"password": self.sentinel_password} if self.sentinel_password else None

    def master_kwargs(self) -> dict[str, Any]:
        """Database and credentials of connections to the master."""
        credentials = {"username": self.username, "password": self.password}
        return {"db": self.db, **{key: value for key, value in credentials.items() if value is not None}}


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names Redis through Sentinel (``sentinel://``)."""
    return url.split("://", 1)[0].lower() == SCHEME


def sentinel_target(
    url: str, master: str, sentinel_password: str | None = None, variable: str = "REDIS_URL"
) -> SentinelTarget:
    """The Sentinel nodes, master name, database and credentials of a ``sentinel://`` URL.

    Raises ``ConfigError`` naming ``variable`` when the URL is malformed, when a later address
    names another database or password than the first, or when ``master`` is empty.
    """
    if not master:
        raise ConfigError(
            f"{variable} is a sentinel:// URL: set INSIGHTS_REDIS_SENTINEL_MASTER to the name of the master "
            "the Sentinels monitor (the name in their `sentinel monitor <name> ...` line)"
        )
    nodes: list[tuple[str, int]] = []
    first: tuple[int, str | None, str | None] | None = None
    for address in (part.strip() for part in url.split(";")):
        if not address:
            continue
        host, port, db, username, password = _address(address, variable)
        nodes.append((host, port))
        if first is None:
            first = (db if db is not None else 0, username, password)
        elif (db is not None and db != first[0]) or (password is not None and password != first[2]):
            raise ConfigError(
                f"{variable}: the Sentinel address {_shown(address)!r} names another database or password than "
                "the first; kombu and Celery read them from the first address only: write them there "
                f"(e.g. {EXAMPLE})"
            )
    if first is None:
        raise ConfigError(f"{variable} names no Sentinel node; write e.g. {EXAMPLE}")
    db, username, password = first
    return SentinelTarget(tuple(nodes), master, db, username, password, sentinel_password)


def sentinel_of(settings: Settings, url: str) -> SentinelTarget | None:
    """The Sentinel target of ``url`` (the deployment's ``REDIS_URL`` or ``BROKER_URL``), or None for a plain URL."""
    if not is_sentinel(url):
        return None
    variable = "REDIS_URL" if url == settings.redis_url else "BROKER_URL"
    return sentinel_target(url, settings.redis_sentinel_master, settings.redis_sentinel_password, variable)


def _address(address: str, variable: str) -> tuple[str, int, int | None, str | None, str | None]:
    """(host, port, database or None, username, password) of one ``sentinel://`` address."""
    parts = urlsplit(address)
    if parts.query or parts.fragment:  # kombu, Celery and RedBeat would ignore them without a word
        raise ConfigError(
            f"{variable}: query options and fragments (such as ?ssl=true) are not supported in a Sentinel URL, "
            f"got {_shown(address)!r}: write each address as sentinel://[:password@]host[:port][/db] "
            f"(e.g. {EXAMPLE}); TLS to Sentinel or to a Sentinel-managed master is not supported (docs/sentinel.md)"
        )
    if parts.scheme.lower() != SCHEME:
        raise ConfigError(
            f"{variable}: every address of a Sentinel URL starts with sentinel://, got {_shown(address)!r}; "
            f"write e.g. {EXAMPLE}"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{variable}: the port of {_shown(address)!r} is not a number") from None
    if not parts.hostname:
        raise ConfigError(f"{variable}: the Sentinel address {_shown(address)!r} names no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"{variable}: the database of {_shown(address)!r} must be a number such as /0")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.hostname, port, int(path) if path else None, username, password


def _shown(address: str) -> str:
    """An address with its password hidden, for error messages."""
    parts = urlsplit(address)
    if parts.password is None:
        return address
    return address.replace(f":{parts.password}@", ":***@", 1)
