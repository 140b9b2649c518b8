"""Settings from the environment, queue routing, and the Celery configuration."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from config.celery import SERIALIZER_NAME, celery_config
from config.queues import task_routes
from config.settings import ROOT, ConfigError, Queues, Remote, Settings, settings_table


# Settings ----------------------------------------------------------------------------
def test_an_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.redis_url is settings.broker_url is settings.mongo_url is None
    assert settings.mongo_db_prefix == "insights_"
    assert settings.data_dir == ROOT / "var"
    assert settings.fs_root == ROOT / "var" / "files"
    assert settings.fs_url_prefix == "/fs"
    assert settings.module_packages == ("modules",)
    assert settings.queues == Queues("views", "queries", "events", "reports", "batch")
    assert settings.result_timeout == 30.0
    assert settings.result_expires == 24 * 3600
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 8000)


def test_every_environment_variable_is_read(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://cache:6379/1",
            "BROKER_URL": "redis://broker:6379/2",
            "MONGO_URL": "mongodb://mongo:27017",
            "MONGO_DB_PREFIX": "test_",
            "INSIGHTS_DATA_DIR": str(tmp_path / "data"),
            "INSIGHTS_FS_ROOT": str(tmp_path / "files"),
            "INSIGHTS_FS_URL_PREFIX": "/files/",
            "INSIGHTS_MODULES": " extra.modules , more ,,",
            "QUEUE_VIEWS": "v",
            "QUEUE_QUERIES": "q",
            "QUEUE_EVENTS": "e",
            "QUEUE_REPORTS": "r",
            "QUEUE_BATCH": "b",
            "INSIGHTS_RESULT_TIMEOUT": "2.5",
            "INSIGHTS_RESULT_EXPIRES": "600",
            "INSIGHTS_BATCH_RECORD_TTL": "3600",
            "INSIGHTS_MAX_REQUEST_BYTES": "1024",
            "INSIGHTS_HOST": "0.0.0.0",
            "INSIGHTS_PORT": "9000",
        }
    )

    assert settings == Settings(
        redis_url="redis://cache:6379/1",
        broker_url="redis://broker:6379/2",
        mongo_url="mongodb://mongo:27017",
        mongo_db_prefix="test_",
        data_dir=tmp_path / "data",
        fs_root=tmp_path / "files",
        fs_url_prefix="/files",
        module_packages=("modules", "extra.modules", "more"),
        queues=Queues(views="v", queries="q", events="e", reports="r", batch="b"),
        result_timeout=2.5,
        result_expires=600,
        batch_record_ttl=3600,
        max_request_bytes=1024,
        web_host="0.0.0.0",
        web_port=9000,
    )


def test_the_file_store_lives_in_the_data_dir_by_default(tmp_path: Path) -> None:
    settings = Settings.from_env({"INSIGHTS_DATA_DIR": str(tmp_path)})

    assert settings.fs_root == tmp_path / "files"


def test_the_broker_falls_back_to_the_redis_url() -> None:
    assert Settings.from_env({"REDIS_URL": "redis://r:6379/0"}).broker == "redis://r:6379/0"
    assert Settings.from_env({"REDIS_URL": "redis://r", "BROKER_URL": "amqp://b"}).broker == "amqp://b"


def test_empty_urls_count_as_unset() -> None:
    settings = Settings.from_env({"REDIS_URL": "", "BROKER_URL": "", "MONGO_URL": ""})

    assert settings.redis_url is settings.broker_url is settings.mongo_url is None


@pytest.mark.parametrize("prop", ["broker", "redis", "mongo"])
def test_a_missing_url_is_a_config_error(prop: str) -> None:
    with pytest.raises(ConfigError, match="set "):
        getattr(Settings(), prop)


def test_an_empty_number_gives_the_default() -> None:
    assert Settings.from_env({"INSIGHTS_PORT": ""}).web_port == 8000


@pytest.mark.parametrize(
    "name", ["INSIGHTS_RESULT_TIMEOUT", "INSIGHTS_RESULT_EXPIRES", "INSIGHTS_BATCH_RECORD_TTL", "INSIGHTS_PORT"]
)
@pytest.mark.parametrize("value", ["soon", "-5", "0", "nan", "inf", "1e999"])
def test_a_number_that_is_not_a_positive_number_is_a_config_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_to_env_round_trips_through_from_env(tmp_path: Path) -> None:
    settings = Settings(
        redis_url="redis://cache:6379/1",
        broker_url="redis://broker:6379/2",
        mongo_url="mongodb://mongo:27017",
        mongo_db_prefix="test_",
        data_dir=tmp_path / "data",
        fs_root=tmp_path / "elsewhere",
        fs_url_prefix="/files",
        module_packages=("modules", "extra.modules"),
        queues=Queues(views="v", queries="q", events="e", reports="r", batch="b"),
        result_timeout=2.5,
        result_expires=600,
        batch_record_ttl=3600,
        max_request_bytes=1024,
        web_host="0.0.0.0",
        web_port=9000,
    )

    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env(Settings().to_env()) == Settings()


def other_value(kind: Any, default: Any) -> Any:
    """A value of a setting's type that is not its default (and survives to_env/from_env)."""
    if kind is bool:
        return not default
    if kind in (int, float):
        return kind(default * 3 + 1)
    if kind is Path:
        return Path("/elsewhere") / default.name
    if typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is Remote:
        return (*default, Remote("https://b.example:8000", "t0ken"), Remote("http://c.example"))
    if typing.get_origin(kind) is tuple:
        return (*default, "extra.names")
    if typing.get_origin(kind) is typing.Literal:
        return next(choice for choice in typing.get_args(kind) if choice != default)
    return f"{default or 'set'}-other"


def test_every_setting_survives_to_env_and_from_env() -> None:
    """Each field differs from its default: a setting to_env forgets (or from_env misreads) fails here."""
    hints = typing.get_type_hints(Settings)
    changed = {
        f.name: other_value(hints[f.name], f.default) for f in dataclasses.fields(Settings) if f.name != "queues"
    }
    settings = Settings(**changed, queues=Queues(**{q: f"{q}-other" for q in Queues.__dataclass_fields__}))

    assert all(getattr(settings, name) != getattr(Settings(), name) for name in Settings.__dataclass_fields__)
    assert Settings.from_env(settings.to_env()) == settings


def test_each_setting_has_its_own_variable() -> None:
    variables = Settings(redis_url="r", broker_url="b", mongo_url="m", redis_sentinel_password="p").to_env()

    assert len(variables) == len(Settings.__dataclass_fields__) - 1 + len(Queues.__dataclass_fields__)
    assert Settings.variable("web_threads") == "INSIGHTS_WEB_THREADS"


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_flag_that_is_not_on_or_off_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="INSIGHTS_AUTH must be on or off"):
        Settings.from_env({"INSIGHTS_AUTH": value})


def test_the_event_log_is_in_mongodb_unless_local_is_chosen() -> None:
    assert Settings().event_log == "mongo"
    assert Settings.from_env({"INSIGHTS_EVENT_LOG": " Local "}).event_log == "local"
    with pytest.raises(ConfigError, match="INSIGHTS_EVENT_LOG must be one of mongo, local, got 'files'"):
        Settings.from_env({"INSIGHTS_EVENT_LOG": "files"})


def test_the_readme_settings_table_is_generated_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| variable | default | meaning |")
    end = readme.index("\n\n", start) + 1

    assert readme[start:end] == settings_table(), "regenerate it: python -m config.settings --table"


def test_the_settings_table_prints_from_the_command_line() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "config.settings", "--table"], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert printed.stdout == settings_table()


# Queue routing -----------------------------------------------------------------------
QUEUES = Queues(views="v", queries="q", events="e", reports="r", batch="b")


def test_task_routes_put_exact_overrides_before_the_globs() -> None:
    exact, by_kind = task_routes(QUEUES, {"query.slow": "r"})

    assert exact == {"query.slow": {"queue": "r"}}
    assert by_kind == {
        "view.*": {"queue": "v"},
        "query.*": {"queue": "q"},
        "handler.*": {"queue": "e"},
        "batch.*": {"queue": "e"},
        "cron.*": {"queue": "r"},  # scheduled jobs (tasks/schedule.py)
        "maintenance.*": {"queue": "r"},
    }


def test_celery_routes_an_override_before_its_kind() -> None:
    app = Celery("routing-test", set_as_current=False)
    app.conf.update(celery_config(Settings(redis_url="redis://127.0.0.1:1/0", queues=QUEUES), {"query.slow": "r"}))

    def queue_of(task: str) -> str:
        return str(app.amqp.router.route({}, task)["queue"].name)

    assert queue_of("query.slow") == "r"
    assert queue_of("query.fast") == "q"
    assert queue_of("view.grades") == "v"
    assert queue_of("handler.grading.store") == "e"
    assert queue_of("batch.record") == "e"
    assert queue_of("something.else") == "b"


# Celery configuration ----------------------------------------------------------------
def test_celery_config_keeps_work_and_uses_our_serializer() -> None:
    config = celery_config(Settings(redis_url="redis://r:6379/0", broker_url="redis://b:6379/0"))

    assert config["broker_url"] == "redis://b:6379/0"
    assert config["result_backend"] == "redis://r:6379/0"
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["task_serializer"] == config["result_serializer"] == SERIALIZER_NAME
    assert SERIALIZER_NAME in config["accept_content"]
    assert config["result_expires"] > 0


@pytest.mark.parametrize("value", ["s3", "gridfs,local", "../local"])
def test_an_unknown_file_store_backend_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="INSIGHTS_FS_BACKEND must be one of gridfs, local"):
        Settings.from_env({"INSIGHTS_FS_BACKEND": value})
    assert Settings.from_env({"INSIGHTS_FS_BACKEND": " Local "}).fs_backend == "local"
    assert Settings.from_env({}).fs_backend == "gridfs"


def test_remotes_are_urls_with_optional_tokens_that_no_repr_or_error_shows() -> None:
    settings = Settings.from_env({"INSIGHTS_REMOTES": "https://b.example:8000/ s3cr3t-token, http://c.example"})

    assert settings.remotes == (Remote("https://b.example:8000", "s3cr3t-token"), Remote("http://c.example"))
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in repr(settings.remotes)
    for bad in ("b.example s3cr3t-token", "https://b.example s3cr3t-token extra", "https://u:s3cr3t@b.example"):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({"INSIGHTS_REMOTES": bad})
        assert "s3cr3t" not in str(refused.value) and "INSIGHTS_REMOTES" in str(refused.value)


def test_a_remote_token_over_plain_http_is_refused_unless_the_host_is_loopback() -> None:
    for bad in ("http://b.example:8000 s3cr3t-token", "https://a.example x, http://10.0.0.2 s3cr3t-token"):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({"INSIGHTS_REMOTES": bad})
        assert "INSIGHTS_REMOTES" in str(refused.value) and "https://" in str(refused.value)
        assert "s3cr3t" not in str(refused.value)
    loopback = "http://127.0.0.1:8000 t1, http://localhost:8001 t2, http://[::1]:8002 t3, http://b.example"
    assert [r.url for r in Settings.from_env({"INSIGHTS_REMOTES": loopback}).remotes] == [
        "http://127.0.0.1:8000",
        "http://localhost:8001",
        "http://[::1]:8002",
        "http://b.example",
    ]


def test_the_sentinel_password_is_not_in_the_settings_repr() -> None:
    settings = Settings.from_env({"INSIGHTS_REDIS_SENTINEL_PASSWORD": "s3cr3t-sentinel"})

    assert settings.redis_sentinel_password == "s3cr3t-sentinel"
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings)


@pytest.mark.parametrize(
    "variable, url",
    [
        ("REDIS_URL", "redis://:s3cr3t@cache.example:6379/0"),
        ("BROKER_URL", "amqp://insights:s3cr3t@mq.example:5672//"),
        ("MONGO_URL", "mongodb://insights:s3cr3t@db.example:27017"),
    ],
)
def test_server_urls_which_may_hold_passwords_are_not_in_the_settings_repr(variable: str, url: str) -> None:
    settings = Settings.from_env({variable: url})

    assert url in settings.to_env().values()
    assert "s3cr3t" not in repr(settings)
