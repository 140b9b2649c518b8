"""Settings read from the environment: the only place that reads ``os.environ``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting read from the environment is missing or malformed."""


@dataclass(frozen=True)
class Queues:
    """Names of the queues each kind of task goes to by default."""

    views: str = "views"
    queries: str = "queries"
    events: str = "events"
    reports: str = "reports"
    batch: str = "batch"

    def all(self) -> tuple[str, ...]:
        """Every queue name, for a worker that consumes them all."""
        return (self.views, self.queries, self.events, self.reports, self.batch)


@dataclass(frozen=True)
class Settings:
    """Typed configuration of one Insights deployment."""

    redis_url: str | None = None
    broker_url: str | None = None
    mongo_url: str | None = None
    mongo_db_prefix: str = "insights_"
    redis_prefix: str = "insights:"
    data_dir: Path = ROOT / "var"
    fs_root: Path = ROOT / "var" / "files"
    fs_url_prefix: str = "/fs"
    module_packages: tuple[str, ...] = ("modules",)
    exclude_modules: tuple[str, ...] = ()
    queues: Queues = field(default_factory=Queues)
    result_timeout: float = 30.0
    result_expires: int = 24 * 3600
    batch_record_ttl: int = 7 * 24 * 3600
    max_request_bytes: int = 16 * 1024 * 1024
    batch_size: int = 500
    batch_interval: float = 0.1
    dedupe_window: int = 7 * 24 * 3600
    shards: int = 4
    visibility_timeout: int = 3600
    redrive_after: float = 60.0
    handler_attempts: int = 3
    handler_backoff: float = 0.5
    deadletter_max: int = 100_000
    conflicts_max: int = 100_000
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    auth: bool = False
    task_events: bool = False
    # Scheduling (tasks/schedule.py): beat's lock and the file-store sweeper.
    beat_lock_timeout: float = 60.0
    sweep_interval: float = 300.0
    # Operational defaults: event-log retention, /health's backlog threshold, per-kind time limits.
    eventlog_retention_days: float = 30.0
    health_max_backlog_age: float = 60.0
    view_time_limit: float = 150.0
    cron_time_limit: float = 1800.0
    # Quotas and limits (docs/security.md): what one client may use of the deployment.
    rate_limit: float = 20.0
    rate_burst: int = 40
    max_runs: int = 32
    run_expires: int = 600
    max_chain_steps: int = 20
    max_group_width: int = 20
    memo_min_refresh: float = 10.0
    redis_maxmemory: str = "1gb"
    web_threads: int = 8

    @property
    def broker(self) -> str:
        """The broker URL: ``BROKER_URL`` when given, else the Redis URL."""
        url = self.broker_url or self.redis_url
        if not url:
            raise ConfigError("no broker: set BROKER_URL or REDIS_URL (or start embedded servers)")
        return url

    @property
    def redis(self) -> str:
        """The Redis URL used as result backend and cache."""
        if not self.redis_url:
            raise ConfigError("no Redis: set REDIS_URL (or start the embedded Redis)")
        return self.redis_url

    @property
    def mongo(self) -> str:
        """The MongoDB URL that holds one database per module."""
        if not self.mongo_url:
            raise ConfigError("no MongoDB: set MONGO_URL (or start the embedded nx-27017)")
        return self.mongo_url

    @property
    def event_log_dir(self) -> Path:
        """Folder of the event log's JSON-lines segments."""
        return self.data_dir / "eventlog"

    def with_urls(self, redis_url: str | None = None, mongo_url: str | None = None) -> Settings:
        """A copy with the Redis and/or MongoDB URL filled in (e.g. by embedded servers)."""
        return replace(self, redis_url=redis_url or self.redis_url, mongo_url=mongo_url or self.mongo_url)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        env = {
            "MONGO_DB_PREFIX": self.mongo_db_prefix,
            "INSIGHTS_REDIS_PREFIX": self.redis_prefix,
            "INSIGHTS_DATA_DIR": str(self.data_dir),
            "INSIGHTS_FS_ROOT": str(self.fs_root),
            "INSIGHTS_FS_URL_PREFIX": self.fs_url_prefix,
            "INSIGHTS_MODULES": ",".join(p for p in self.module_packages if p != "modules"),
            "INSIGHTS_EXCLUDE_MODULES": ",".join(self.exclude_modules),
            "INSIGHTS_RESULT_TIMEOUT": str(self.result_timeout),
            "INSIGHTS_RESULT_EXPIRES": str(self.result_expires),
            "INSIGHTS_BATCH_RECORD_TTL": str(self.batch_record_ttl),
            "INSIGHTS_MAX_REQUEST_BYTES": str(self.max_request_bytes),
            "INSIGHTS_BATCH_SIZE": str(self.batch_size),
            "INSIGHTS_BATCH_INTERVAL": str(self.batch_interval),
            "INSIGHTS_DEDUPE_WINDOW": str(self.dedupe_window),
            "INSIGHTS_SHARDS": str(self.shards),
            "INSIGHTS_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "INSIGHTS_REDRIVE_AFTER": str(self.redrive_after),
            "INSIGHTS_HANDLER_ATTEMPTS": str(self.handler_attempts),
            "INSIGHTS_HANDLER_BACKOFF": str(self.handler_backoff),
            "INSIGHTS_DEADLETTER_MAX": str(self.deadletter_max),
            "INSIGHTS_CONFLICTS_MAX": str(self.conflicts_max),
            "INSIGHTS_HOST": self.web_host,
            "INSIGHTS_PORT": str(self.web_port),
            "INSIGHTS_AUTH": "on" if self.auth else "off",
            "INSIGHTS_TASK_EVENTS": "on" if self.task_events else "off",
            "INSIGHTS_BEAT_LOCK_TIMEOUT": str(self.beat_lock_timeout),
            "INSIGHTS_SWEEP_INTERVAL": str(self.sweep_interval),
            "INSIGHTS_EVENTLOG_RETENTION_DAYS": str(self.eventlog_retention_days),
            "INSIGHTS_HEALTH_MAX_BACKLOG_AGE": str(self.health_max_backlog_age),
            "INSIGHTS_VIEW_TIME_LIMIT": str(self.view_time_limit),
            "INSIGHTS_CRON_TIME_LIMIT": str(self.cron_time_limit),
            "INSIGHTS_RATE_LIMIT": str(self.rate_limit),
            "INSIGHTS_RATE_BURST": str(self.rate_burst),
            "INSIGHTS_MAX_RUNS": str(self.max_runs),
            "INSIGHTS_RUN_EXPIRES": str(self.run_expires),
            "INSIGHTS_MAX_CHAIN_STEPS": str(self.max_chain_steps),
            "INSIGHTS_MAX_GROUP_WIDTH": str(self.max_group_width),
            "INSIGHTS_MEMO_MIN_REFRESH": str(self.memo_min_refresh),
            "INSIGHTS_REDIS_MAXMEMORY": self.redis_maxmemory,
            "INSIGHTS_WEB_THREADS": str(self.web_threads),
        }
        urls = {"REDIS_URL": self.redis_url, "BROKER_URL": self.broker_url, "MONGO_URL": self.mongo_url}
        env.update({name: url for name, url in urls.items() if url})
        env.update({f"QUEUE_{kind.upper()}": getattr(self.queues, kind) for kind in Queues.__dataclass_fields__})
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (see the README's settings table)."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("INSIGHTS_DATA_DIR", str(ROOT / "var")))
        extra = _names(env.get("INSIGHTS_MODULES", ""))
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            broker_url=env.get("BROKER_URL") or None,
            mongo_url=env.get("MONGO_URL") or None,
            mongo_db_prefix=env.get("MONGO_DB_PREFIX", "insights_"),
            redis_prefix=env.get("INSIGHTS_REDIS_PREFIX", "insights:"),
            data_dir=data_dir,
            fs_root=Path(env.get("INSIGHTS_FS_ROOT", str(data_dir / "files"))),
            fs_url_prefix=env.get("INSIGHTS_FS_URL_PREFIX", "/fs").rstrip("/"),
            module_packages=("modules", *extra),
            exclude_modules=_names(env.get("INSIGHTS_EXCLUDE_MODULES", "")),
            queues=Queues(
                views=env.get("QUEUE_VIEWS", "views"),
                queries=env.get("QUEUE_QUERIES", "queries"),
                events=env.get("QUEUE_EVENTS", "events"),
                reports=env.get("QUEUE_REPORTS", "reports"),
                batch=env.get("QUEUE_BATCH", "batch"),
            ),
            result_timeout=_number(env, "INSIGHTS_RESULT_TIMEOUT", 30.0),
            result_expires=int(_number(env, "INSIGHTS_RESULT_EXPIRES", 24 * 3600)),
            batch_record_ttl=int(_number(env, "INSIGHTS_BATCH_RECORD_TTL", 7 * 24 * 3600)),
            max_request_bytes=int(_number(env, "INSIGHTS_MAX_REQUEST_BYTES", 16 * 1024 * 1024)),
            batch_size=int(_number(env, "INSIGHTS_BATCH_SIZE", 500)),
            batch_interval=_number(env, "INSIGHTS_BATCH_INTERVAL", 0.1),
            dedupe_window=int(_number(env, "INSIGHTS_DEDUPE_WINDOW", 7 * 24 * 3600)),
            shards=int(_number(env, "INSIGHTS_SHARDS", 4)),
            visibility_timeout=int(_number(env, "INSIGHTS_VISIBILITY_TIMEOUT", 3600)),
            redrive_after=_number(env, "INSIGHTS_REDRIVE_AFTER", 60.0),
            handler_attempts=int(_number(env, "INSIGHTS_HANDLER_ATTEMPTS", 3)),
            handler_backoff=_number(env, "INSIGHTS_HANDLER_BACKOFF", 0.5),
            deadletter_max=int(_number(env, "INSIGHTS_DEADLETTER_MAX", 100_000)),
            conflicts_max=int(_number(env, "INSIGHTS_CONFLICTS_MAX", 100_000)),
            web_host=env.get("INSIGHTS_HOST", "127.0.0.1"),
            web_port=int(_number(env, "INSIGHTS_PORT", 8000)),
            auth=_flag(env, "INSIGHTS_AUTH"),
            task_events=_flag(env, "INSIGHTS_TASK_EVENTS"),
            beat_lock_timeout=_number(env, "INSIGHTS_BEAT_LOCK_TIMEOUT", 60.0),
            sweep_interval=_number(env, "INSIGHTS_SWEEP_INTERVAL", 300.0),
            eventlog_retention_days=_number(env, "INSIGHTS_EVENTLOG_RETENTION_DAYS", 30.0),
            health_max_backlog_age=_number(env, "INSIGHTS_HEALTH_MAX_BACKLOG_AGE", 60.0),
            view_time_limit=_number(env, "INSIGHTS_VIEW_TIME_LIMIT", 150.0),
            cron_time_limit=_number(env, "INSIGHTS_CRON_TIME_LIMIT", 1800.0),
            rate_limit=_number(env, "INSIGHTS_RATE_LIMIT", 20.0),
            rate_burst=int(_number(env, "INSIGHTS_RATE_BURST", 40)),
            max_runs=int(_number(env, "INSIGHTS_MAX_RUNS", 32)),
            run_expires=int(_number(env, "INSIGHTS_RUN_EXPIRES", 600)),
            max_chain_steps=int(_number(env, "INSIGHTS_MAX_CHAIN_STEPS", 20)),
            max_group_width=int(_number(env, "INSIGHTS_MAX_GROUP_WIDTH", 20)),
            memo_min_refresh=_number(env, "INSIGHTS_MEMO_MIN_REFRESH", 10.0),
            redis_maxmemory=env.get("INSIGHTS_REDIS_MAXMEMORY", "1gb"),
            web_threads=int(_number(env, "INSIGHTS_WEB_THREADS", 8)),
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "off", "false", "no"):
        return False
    if raw in ("1", "on", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value
