"""Settings read from the environment: the only place that reads ``os.environ``.

Each setting is declared once, as a field of ``Settings`` (or ``Queues``) made by ``setting()``:
its default, its environment variable and its one-line doc. ``Settings.from_env``,
``Settings.to_env`` and the README's settings table (``settings_table()``; print it with
``python -m config.settings --table``) are derived from those declarations. How a variable is
read follows the field's type: ``int`` and ``float`` are positive numbers (empty: the default),
``bool`` is on/off, ``tuple[str, ...]`` comma-separated names, ``str | None`` a URL (empty: unset),
``str`` and ``Path`` as given, a ``Literal`` one of its values; a declaration may bring its own ``parse`` / ``unparse``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from config.runfile import no_server_message

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")

# The doc of a setting that shares the table row (and the doc) of the setting declared before it.
SAME_ROW = "(same row as the setting above)"


class ConfigError(ValueError):
    """A setting read from the environment is missing or malformed."""


def setting(
    default: T,
    env: str,
    doc: str,
    *,
    shown: str | None = None,
    parse: Callable[[str, str], Any] | None = None,
    unparse: Callable[[Any], str] | None = None,
    default_from: Callable[[Mapping[str, Any]], Any] | None = None,
    secret: bool = False,
) -> T:
    """Declare one setting: a dataclass field with its ``default``, environment variable and doc.

    ``shown``: the default as the README's table shows it (Markdown), when not the value itself;
    ``parse(variable, raw)`` / ``unparse(value)``: instead of the ones of the field's type;
    ``default_from(values)``: the default from the settings read before this one;
    ``secret``: a password or token, left out of the settings' repr.
    """
    spec = {"env": env, "doc": doc, "shown": shown, "parse": parse, "unparse": unparse, "default_from": default_from}
    metadata = {key: value for key, value in spec.items() if value is not None}
    return field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class Queues:
    """Names of the queues each kind of task goes to by default."""

    views: str = setting("views", "QUEUE_VIEWS", "queue names (also set the Procfile's `WORKER_QUEUES`)")
    queries: str = setting("queries", "QUEUE_QUERIES", SAME_ROW)
    events: str = setting("events", "QUEUE_EVENTS", SAME_ROW)
    reports: str = setting("reports", "QUEUE_REPORTS", SAME_ROW)
    batch: str = setting("batch", "QUEUE_BATCH", SAME_ROW)

    def all(self) -> tuple[str, ...]:
        """Every queue name, for a worker that consumes them all."""
        return (self.views, self.queries, self.events, self.reports, self.batch)


@dataclass(frozen=True)
class Remote:
    """Another Insights server: its base URL and the API token to call it with (kept out of reprs)."""

    url: str
    token: str | None = field(default=None, repr=False)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this host (``localhost``, ``127.0.0.0/8``, ``::1``): plain HTTP does not leave it."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_over_plain_http(url: str, token: str | None) -> bool:
    """Whether calling ``url`` with ``token`` would send the token unencrypted off this host."""
    return bool(token) and url.lower().startswith("http://") and not is_loopback_url(url)


def _remotes(variable: str, raw: str) -> tuple[Remote, ...]:
    remotes = []
    for number, item in enumerate((part.strip() for part in raw.split(",")), 1):
        if not item:
            continue
        words = item.split()
        # The messages never quote the item: it may hold a token.
        if len(words) > 2:
            raise ConfigError(f"{variable}: item {number} has {len(words)} words; write URL or URL TOKEN")
        if not words[0].startswith(("http://", "https://")) or "@" in words[0].split("/")[2]:
            raise ConfigError(
                f"{variable}: item {number} must start with an http:// or https:// URL without a user:password "
                "part (give the token after the URL, separated by a space)"
            )
        remote = Remote(words[0].rstrip("/"), words[1] if len(words) == 2 else None)
        if token_over_plain_http(remote.url, remote.token):
            raise ConfigError(
                f"{variable}: item {number} gives a token with a plain http:// URL to a host that is not loopback; "
                "use https:// (the token would cross the network unencrypted)"
            )
        remotes.append(remote)
    return tuple(remotes)


def _unparse_remotes(remotes: tuple[Remote, ...]) -> str:
    return ", ".join(f"{r.url} {r.token}" if r.token else r.url for r in remotes)


def _module_packages(variable: str, raw: str) -> tuple[str, ...]:
    return ("modules", *_names(variable, raw))


def _extra_packages(packages: tuple[str, ...]) -> str:
    return ",".join(p for p in packages if p != "modules")


def _url_prefix(variable: str, raw: str) -> str:
    return raw.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Typed configuration of one Insights deployment."""

    redis_url: str | None = setting(
        None, "REDIS_URL", "result backend, cache, file expiry, batch records; broker unless `BROKER_URL`",
        shown="embedded Redis", secret=True,  # may hold a password
    )  # fmt: skip
    broker_url: str | None = setting(
        None,
        "BROKER_URL",
        "broker, e.g. `amqp://guest:guest@localhost:5672//` for RabbitMQ",
        shown="`REDIS_URL`",
        secret=True,  # may hold a password
    )
    redis_sentinel_master: str = setting(
        "", "INSIGHTS_REDIS_SENTINEL_MASTER",
        "with Redis behind Sentinel (`REDIS_URL` / `BROKER_URL` = "
        "`sentinel://:password@s1:26379/0;sentinel://s2:26379`, [docs/sentinel.md](docs/sentinel.md)): "
        "the name of the master the Sentinels monitor",
    )  # fmt: skip
    redis_sentinel_password: str | None = setting(
        None, "INSIGHTS_REDIS_SENTINEL_PASSWORD",
        "password of the Sentinel nodes themselves, if they require one (the master's goes in the URL)",
        shown="none", secret=True,
    )  # fmt: skip
    mongo_url: str | None = setting(
        None,
        "MONGO_URL",
        "MongoDB holding one database per module",
        shown="embedded nx-27017",
        secret=True,  # may hold a password
    )
    mongo_db_prefix: str = setting("insights_", "MONGO_DB_PREFIX", "prefix of module database names")
    redis_prefix: str = setting(
        "insights:", "INSIGHTS_REDIS_PREFIX",
        "prefix of every Redis key of ours (`tasks/storage/keys.py` lists them): deployments sharing a Redis "
        "each take their own, and their own queues (`QUEUE_*`)",
    )  # fmt: skip
    data_dir: Path = setting(
        ROOT / "var", "INSIGHTS_DATA_DIR", "embedded servers' data, event log, file stores", shown="`./var`"
    )
    fs_backend: Literal["gridfs", "local"] = setting(
        "gridfs", "INSIGHTS_FS_BACKEND",
        "where module file stores (`fs`) keep files: `gridfs`, in `MONGO_URL` (every host sees the same "
        "files), or `local`, under `INSIGHTS_FS_ROOT` (a single host only; `python -m tasks fs-migrate` "
        "moves such a store into GridFS)",
    )  # fmt: skip
    fs_root: Path = setting(
        ROOT / "var" / "files", "INSIGHTS_FS_ROOT", "root of the module file stores with `INSIGHTS_FS_BACKEND=local`",
        shown="`$INSIGHTS_DATA_DIR/files`", default_from=lambda values: values["data_dir"] / "files",
    )  # fmt: skip
    fs_url_prefix: str = setting("/fs", "INSIGHTS_FS_URL_PREFIX", "URL prefix of `fs.get_url`", parse=_url_prefix)
    module_packages: tuple[str, ...] = setting(
        ("modules",), "INSIGHTS_MODULES",
        "extra comma-separated packages of modules (or single modules) to load besides `modules`; an opt-in "
        "module (`OPT_IN = True`) is loaded only when named itself: `modules.testmodule` loads the test module; "
        "an entry that is not importable or declares no decorated function stops the start with an error saying why",
        parse=_module_packages, unparse=_extra_packages,
    )  # fmt: skip
    exclude_modules: tuple[str, ...] = setting(
        (), "INSIGHTS_EXCLUDE_MODULES", "module names not to load (e.g. `video`)"
    )
    queues: Queues = field(default_factory=Queues)  # QUEUE_VIEWS ... QUEUE_BATCH (declared in Queues)
    result_timeout: float = setting(30.0, "INSIGHTS_RESULT_TIMEOUT", "seconds the web layer waits for a view or query")
    result_expires: int = setting(24 * 3600, "INSIGHTS_RESULT_EXPIRES", "seconds Celery keeps task results")
    batch_record_ttl: int = setting(
        7 * 24 * 3600, "INSIGHTS_BATCH_RECORD_TTL",
        "seconds batch records, receipts and undelivered batch events are kept while a batch is not finished",
    )  # fmt: skip
    batch_done_ttl: int = setting(
        24 * 3600, "INSIGHTS_BATCH_DONE_TTL",
        "seconds a finished batch's record, its receipts and its handlers' kept outcomes stay "
        "(at least `INSIGHTS_VISIBILITY_TIMEOUT`, at most `INSIGHTS_BATCH_RECORD_TTL`)",
    )  # fmt: skip
    max_request_bytes: int = setting(
        16 * 1024 * 1024, "INSIGHTS_MAX_REQUEST_BYTES",
        "largest accepted request body, in bytes as read (chunked or not) and after gzip decoding; larger is 413",
    )  # fmt: skip
    batch_size: int = setting(
        500, "INSIGHTS_BATCH_SIZE",
        "a batch is dispatched when it has this many events or its oldest has waited this many seconds; "
        "each round takes at most a batch from each sender, in turn",
    )  # fmt: skip
    batch_interval: float = setting(0.1, "INSIGHTS_BATCH_INTERVAL", SAME_ROW)
    dedupe_window: int = setting(
        24 * 3600, "INSIGHTS_DEDUPE_WINDOW",
        "seconds an event id is at least remembered for deduplication (up to 1/4 longer; see *Idempotency*)",
    )  # fmt: skip
    shards: int = setting(4, "INSIGHTS_SHARDS", "shard queues per kind for `per_user` / `per_resource` handlers")
    visibility_timeout: int = setting(
        3600, "INSIGHTS_VISIBILITY_TIMEOUT",
        "Redis broker: seconds before a dead worker's unacknowledged task is redelivered; "
        "must exceed the longest task",
    )  # fmt: skip
    redrive_after: float = setting(
        60.0, "INSIGHTS_REDRIVE_AFTER",
        "Redis broker: seconds after which the batcher looks for a batch's task messages and sends again "
        "those the broker lost (see *Durable acceptance*)",
    )  # fmt: skip
    handler_attempts: int = setting(
        3, "INSIGHTS_HANDLER_ATTEMPTS", "default tries of a failing batch and the first retry delay (doubling)"
    )
    handler_backoff: float = setting(0.5, "INSIGHTS_HANDLER_BACKOFF", SAME_ROW)
    deadletter_max: int = setting(100_000, "INSIGHTS_DEADLETTER_MAX", "dead letters kept (oldest trimmed beyond)")
    conflicts_max: int = setting(
        100_000, "INSIGHTS_CONFLICTS_MAX",
        "conflicts kept (events that differ from the one on record under their id; oldest trimmed beyond)",
    )  # fmt: skip
    web_host: str = setting("127.0.0.1", "INSIGHTS_HOST", "where `bin/insights run` serves")
    web_port: int = setting(8000, "INSIGHTS_PORT", SAME_ROW)
    auth: bool = setting(False, "INSIGHTS_AUTH", "`on`: every request needs a token whose policy permits it")
    task_events: bool = setting(
        False, "INSIGHTS_TASK_EVENTS",
        "`on`: workers always send Celery task events (they cost about a third of a worker's throughput; "
        "Flower switches them on while it runs anyway)",
    )  # fmt: skip
    # Scheduling (tasks/schedule.py): beat's lock and the file-store sweeper.
    beat_lock_timeout: float = setting(
        60.0, "INSIGHTS_BEAT_LOCK_TIMEOUT", "seconds a dead beat holds the single-beat lock before a standby takes over"
    )
    lease_ttl: float = setting(
        10.0, "INSIGHTS_LEASE_TTL",
        "seconds a dead (or paused) shard worker or batcher keeps its lease — the one consumer of a shard queue, "
        "the one active batcher — before a standby takes over; holders renew it every quarter of that",
    )  # fmt: skip
    sweep_interval: float = setting(
        300.0, "INSIGHTS_SWEEP_INTERVAL", "seconds between runs of the file-store sweeper (deletes expired files)"
    )
    # The event log (tasks/pipeline/event_logs.py), its retention, /health's backlog threshold, time limits.
    event_log: Literal["mongo", "local"] = setting(
        "mongo", "INSIGHTS_EVENT_LOG",
        "where the batchers keep the event log `replay --log` reads: `mongo` (one compressed document per "
        "batch in the database `<MONGO_DB_PREFIX>-eventlog`, shared by every host) or `local` (JSON-lines "
        "files under `$INSIGHTS_DATA_DIR/eventlog`: a single host only)",
    )  # fmt: skip
    eventlog_retention_days: float = setting(
        30.0, "INSIGHTS_EVENTLOG_RETENTION_DAYS",
        "event-log batches received (`mongo`) or segments last written (`local`) longer ago are deleted by "
        "`maintenance.prune_event_log` (beat, daily)",
    )  # fmt: skip
    health_max_backlog_age: float = setting(
        60.0, "INSIGHTS_HEALTH_MAX_BACKLOG_AGE",
        "`/health` answers 503 (`status: unavailable`, with `reasons`) when the oldest entry waiting in the "
        "intake stream is older than this many seconds; Celery queues are reported by length only "
        "(their messages carry no send time)",
    )  # fmt: skip
    view_time_limit: float = setting(
        150.0, "INSIGHTS_VIEW_TIME_LIMIT",
        "hard time limit (seconds) of view and query tasks; soft limit a fifth less, at most a minute (`120`)",
    )  # fmt: skip
    cron_time_limit: float = setting(
        1800.0, "INSIGHTS_CRON_TIME_LIMIT",
        "hard time limit of `@cron` jobs and `maintenance.*` tasks (soft `1740`); handlers and `batch.record` "
        "keep the global `600` (soft `540`); keep every limit under `INSIGHTS_VISIBILITY_TIMEOUT`",
    )  # fmt: skip
    # Quotas and limits (docs/security.md): what one client may use of the deployment.
    rate_limit: float = setting(
        20.0, "INSIGHTS_RATE_LIMIT",
        "tasks per second (and burst) one client — a token, or an address with auth off — may start through "
        "`/view`, `/query`, `/run` and `/chain`: a request is one task, a chain one per step and group member "
        "(charged before it is sent); beyond it 429 with `Retry-After`; a chain of more tasks than the burst "
        "is always 429",
    )  # fmt: skip
    rate_burst: int = setting(40, "INSIGHTS_RATE_BURST", SAME_ROW)
    max_runs: int = setting(
        32, "INSIGHTS_MAX_RUNS",
        "runs (`POST /run`) one client may have started and not yet collected at `/result`; beyond it 429",
    )  # fmt: skip
    run_expires: int = setting(
        600, "INSIGHTS_RUN_EXPIRES",
        "seconds a run's result waits to be collected; then `/result` is 404 and `maintenance.expire_runs` "
        "(beat, every minute) drops it",
    )  # fmt: skip
    max_chain_steps: int = setting(
        20, "INSIGHTS_MAX_CHAIN_STEPS",
        "steps of a composition and steps of one group in it; beyond them 400 before anything runs",
    )  # fmt: skip
    max_group_width: int = setting(20, "INSIGHTS_MAX_GROUP_WIDTH", SAME_ROW)
    memo_min_refresh: float = setting(
        10.0, "INSIGHTS_MEMO_MIN_REFRESH",
        "seconds after a memoized result was computed during which an HTTP `_memo=refresh` (`/view`, "
        "`/query`, `/run`) is served that result instead of recomputing",
    )  # fmt: skip
    redis_maxmemory: str = setting(
        "1gb", "INSIGHTS_REDIS_MAXMEMORY",
        "memory limit of the embedded Redis (`noeviction`: when full, writes fail — intake answers 503 — "
        "and nothing is evicted)",
    )  # fmt: skip
    web_threads: int = setting(
        8, "INSIGHTS_WEB_THREADS",
        "threads per gunicorn worker (`gthread`): a slow or half-sent request holds a thread, not a worker",
    )  # fmt: skip
    remotes: tuple[Remote, ...] = setting(
        (), "INSIGHTS_REMOTES",
        "other Insights servers whose queries and views the injected `query` / `view` objects (and "
        "`Client.local`) fall back to, first match wins: comma-separated `URL` or `URL TOKEN` items "
        "(`https://b:8000 s3cr3t, https://c:8000`); tokens are never logged nor shown, and need `https://` "
        "unless the host is loopback; redirects are refused, answers bounded by `INSIGHTS_MAX_REQUEST_BYTES`",
        parse=lambda variable, raw: _remotes(variable, raw), unparse=lambda value: _unparse_remotes(value),
    )  # fmt: skip

    @property
    def broker(self) -> str:
        """The broker URL: ``BROKER_URL`` when given, else the Redis URL."""
        url = self.broker_url or self.redis_url
        if not url:
            raise ConfigError(no_server_message("broker", "BROKER_URL or REDIS_URL", self.data_dir))
        return url

    @property
    def redis(self) -> str:
        """The Redis URL used as result backend and cache."""
        if not self.redis_url:
            raise ConfigError(no_server_message("Redis", "REDIS_URL", self.data_dir))
        return self.redis_url

    @property
    def mongo(self) -> str:
        """The MongoDB URL that holds one database per module."""
        if not self.mongo_url:
            raise ConfigError(no_server_message("MongoDB", "MONGO_URL", self.data_dir))
        return self.mongo_url

    @property
    def finished_batch_ttl(self) -> int:
        """Seconds a finished batch's record, receipts and kept outcomes stay: ``batch_done_ttl``, but
        never shorter than a broker redelivery (``visibility_timeout``) nor longer than ``batch_record_ttl``."""
        return min(self.batch_record_ttl, max(self.batch_done_ttl, self.visibility_timeout))

    @property
    def event_log_dir(self) -> Path:
        """Folder of the event log's JSON-lines segments."""
        return self.data_dir / "eventlog"

    def with_urls(
        self, redis_url: str | None = None, mongo_url: str | None = None, broker_url: str | None = None
    ) -> Settings:
        """A copy with the Redis, MongoDB and/or broker URL filled in (e.g. by embedded servers)."""
        return replace(
            self,
            redis_url=redis_url or self.redis_url,
            mongo_url=mongo_url or self.mongo_url,
            broker_url=broker_url or self.broker_url,
        )

    def with_recorded_urls(self, urls: Mapping[str, str]) -> Settings:
        """A copy whose unset URLs are taken from ``urls`` (what a running ``run`` recorded,
        config/runfile.py): configured URLs always win, and the recorded broker is taken only when
        neither ``BROKER_URL`` nor ``REDIS_URL`` is configured (else the configured Redis is the broker)."""
        configured_broker = self.broker_url or self.redis_url
        return replace(
            self,
            redis_url=self.redis_url or urls.get("redis_url"),
            mongo_url=self.mongo_url or urls.get("mongo_url"),
            broker_url=self.broker_url if configured_broker else urls.get("broker_url"),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return _to_env(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (see the README's settings table)."""
        return _from_env(cls, os.environ if environ is None else environ)

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of the setting ``name`` (a field of ``Settings``)."""
        declared = _declarations(Settings)[name]
        if isinstance(declared, type):
            raise KeyError(f"{name} is a group of settings, each with its own variable")
        return declared.env


# Reading and writing the declarations ---------------------------------------------------------
@dataclass(frozen=True)
class Declared:
    """One declared setting, with the parser and writer of its type filled in."""

    name: str
    env: str
    doc: str
    default: Any
    shown: str
    parse: Callable[[str, str], Any]  # (variable, raw value) -> value
    unparse: Callable[[Any], str]
    blank_is_unset: bool  # an empty variable gives the default (numbers, URLs)
    optional: bool  # None (or empty) is left out of to_env
    default_from: Callable[[Mapping[str, Any]], Any] | None


_DECLARATIONS: dict[type, dict[str, Declared | type]] = {}


def _declarations(cls: type) -> dict[str, Declared | type]:
    """The settings a dataclass declares, by field name: a ``Declared``, or the dataclass of a
    group of settings declared there (``Queues``)."""
    if cls not in _DECLARATIONS:
        _DECLARATIONS[cls] = _declare(cls)
    return _DECLARATIONS[cls]


def _declare(cls: type) -> dict[str, Declared | type]:
    hints = typing.get_type_hints(cls)
    found: dict[str, Declared | type] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found[f.name] = kind
            continue
        if "env" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
        parse, unparse, show, blank_is_unset = _by_type(kind, f"{cls.__name__}.{f.name}")
        shown = f.metadata.get("unparse", show)(f.default)
        found[f.name] = Declared(
            name=f.name,
            env=f.metadata["env"],
            doc=f.metadata["doc"],
            default=f.default,
            shown=f.metadata.get("shown") or (f"`{shown}`" if shown else "—"),
            parse=f.metadata.get("parse", parse),
            unparse=f.metadata.get("unparse", unparse),
            blank_is_unset=blank_is_unset,
            optional=type(None) in typing.get_args(kind),
            default_from=f.metadata.get("default_from"),
        )
    return found


def _by_type(
    kind: Any, where: str
) -> tuple[Callable[[str, str], Any], Callable[[Any], str], Callable[[Any], str], bool]:
    """(parse, unparse, show in the table, blank is unset) of a field type."""
    if kind is bool:
        return _flag, _on_off, _on_off, False
    if kind is int:
        return _integer, str, str, True
    if kind is float:
        return _number, str, _short_number, True
    if kind is str:
        return _text, str, str, False
    if kind is Path:
        return _path, str, str, False
    if typing.get_origin(kind) is Literal:
        return _choice(typing.get_args(kind)), str, str, False
    if typing.get_origin(kind) is tuple:
        return _names, ",".join, ",".join, False
    if set(typing.get_args(kind)) == {str, type(None)}:
        return _url, str, str, True
    raise TypeError(f"{where}: no parser for settings of type {kind}")


def _from_env(cls: type[T], env: Mapping[str, str]) -> T:
    values: dict[str, Any] = {}
    for name, declared in _declarations(cls).items():
        if isinstance(declared, type):
            values[name] = _from_env(declared, env)
            continue
        raw = env.get(declared.env)
        if raw is None or (raw == "" and declared.blank_is_unset):
            values[name] = declared.default_from(values) if declared.default_from else declared.default
        else:
            values[name] = declared.parse(declared.env, raw)
    return cls(**values)


def _to_env(settings: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, declared in _declarations(type(settings)).items():
        value = getattr(settings, name)
        if isinstance(declared, type):
            env.update(_to_env(value))
        elif not (declared.optional and not value):
            env[declared.env] = declared.unparse(value)
    return env


def _rows(cls: type) -> list[Declared]:
    """Every setting declared by ``cls`` (and its groups), in declaration order."""
    rows: list[Declared] = []
    for declared in _declarations(cls).values():
        rows += _rows(declared) if isinstance(declared, type) else [declared]
    return rows


def settings_table() -> str:
    """The README's settings table (Markdown), one row per setting or group of settings."""
    rows: list[tuple[list[str], list[str], str]] = []
    for declared in _rows(Settings):
        if declared.doc == SAME_ROW:
            rows[-1][0].append(declared.env)
            rows[-1][1].append(declared.shown)
        else:
            rows.append(([declared.env], [declared.shown], declared.doc))
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for names, shown, doc in rows:
        lines.append(f"| {', '.join(f'`{name}`' for name in names)} | {', '.join(shown)} | {doc} |")
    return "\n".join(lines) + "\n"


# Parsers -------------------------------------------------------------------------------------
def _flag(variable: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("", "0", "off", "false", "no"):
        return False
    if value in ("1", "on", "true", "yes"):
        return True
    raise ConfigError(f"{variable} must be on or off, got {value!r}")


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _names(variable: str, raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(variable: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{variable} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _number(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{variable} must be a positive number, got {raw!r}")
    return value


def _integer(variable: str, raw: str) -> int:
    return int(_number(variable, raw))


def _short_number(value: float) -> str:
    return str(value).removesuffix(".0")


def _text(variable: str, raw: str) -> str:
    return raw


def _path(variable: str, raw: str) -> Path:
    return Path(raw)


def _url(variable: str, raw: str) -> str | None:
    return raw or None


if __name__ == "__main__":
    if sys.argv[1:] != ["--table"]:
        sys.exit("usage: python -m config.settings --table   (prints the README's settings table)")
    print(settings_table(), end="")
