"""``sentinel://`` URLs: how they are read, what is refused, and the Celery and RedBeat options derived."""

from __future__ import annotations

import pytest
from celery import Celery
from kombu import Connection

from config.celery import celery_config
from config.redis_url import SentinelTarget, is_sentinel, sentinel_target
from config.settings import ConfigError, Settings

URL = "sentinel://:secret@s1:26379/2;sentinel://s2:26380;sentinel://s3"


def test_a_sentinel_url_names_every_node_and_the_first_address_the_database_and_password() -> None:
    target = sentinel_target(URL, "main", "sentinel-secret")

    assert target == SentinelTarget(
        nodes=(("s1", 26379), ("s2", 26380), ("s3", 26379)),
        master="main",
        db=2,
        password="secret",
        sentinel_password="sentinel-secret",
    )
    assert target.master_kwargs() == {"db": 2, "password": "secret"}
    assert target.sentinel_kwargs() == {"password": "sentinel-secret"}
    assert is_sentinel(URL) and not is_sentinel("redis://r:6379/0")


@pytest.mark.parametrize(
    ("url", "master", "message"),
    [
        (URL, "", "set INSIGHTS_REDIS_SENTINEL_MASTER"),
        ("sentinel://s1/0;redis://s2:6379/0", "m", "every address of a Sentinel URL starts with sentinel://"),
        ("sentinel://s1/0;sentinel://s2/3", "m", "names another database or password than the first"),
        ("sentinel://:a@s1/0;sentinel://:b@s2", "m", "names another database or password than the first"),
        ("sentinel://s1:port/0", "m", "is not a number"),
        ("sentinel://s1/zero", "m", "must be a number such as /0"),
        ("sentinel:///0", "m", "names no host"),
    ],
)
def test_a_malformed_sentinel_url_is_a_config_error_naming_the_variable(url: str, master: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        sentinel_target(url, master, variable="BROKER_URL")
    assert str(raised.value).startswith("BROKER_URL")
    assert ":b@" not in str(raised.value)  # passwords are not repeated in errors


def test_celery_and_redbeat_get_the_master_name_and_nodes() -> None:
    settings = Settings(redis_url=URL, redis_sentinel_master="main", redis_sentinel_password="sp")
    config = celery_config(settings)

    assert config["broker_url"] == config["result_backend"] == URL
    sentinel_options = {"master_name": "main", "sentinel_kwargs": {"password": "sp"}}
    assert config["broker_transport_options"].items() >= sentinel_options.items()
    assert config["broker_transport_options"]["visibility_timeout"] == settings.visibility_timeout
    assert config["result_backend_transport_options"] == sentinel_options
    assert config["redbeat_redis_url"] == "redis-sentinel://s1:26379/2"
    assert config["redbeat_redis_options"] == {
        "sentinels": [["s1", 26379], ["s2", 26380], ["s3", 26379]],
        "service_name": "main",
        "sentinel_kwargs": {"password": "sp"},
        "db": 2,
        "password": "secret",
    }

    # kombu picks the Sentinel transport from the URL and sees every node.
    app = Celery("sentinel-config", set_as_current=False)
    app.conf.update(config)
    connection: Connection = app.connection_for_write()
    assert connection.transport_cls == "sentinel" and len(connection.alt) == 3


def test_a_plain_redis_url_keeps_its_celery_options() -> None:
    config = celery_config(Settings(redis_url="redis://r:6379/0"))

    assert "master_name" not in config["broker_transport_options"]
    assert config["result_backend_transport_options"] == {}
    assert (config["redbeat_redis_url"], config["redbeat_redis_options"]) == ("redis://r:6379/0", {})


def test_a_sentinel_broker_without_a_master_name_is_refused_when_celery_is_configured() -> None:
    with pytest.raises(ConfigError, match=r"^BROKER_URL is a sentinel:// URL: set INSIGHTS_REDIS_SENTINEL_MASTER"):
        celery_config(Settings(redis_url="redis://r:6379/0", broker_url="sentinel://s1:26379/0"))


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://:s3cr3t@s1:26379/0?ssl=true;sentinel://s2:26379",
        "sentinel://:s3cr3t@s1:26379/0;sentinel://s2:26379?ssl_cert_reqs=required",
        "sentinel://:s3cr3t@s1:26379/0#tls",
    ],
)
def test_a_sentinel_url_with_query_options_is_refused_not_silently_ignored(url: str) -> None:
    with pytest.raises(ConfigError, match="not supported") as raised:
        sentinel_target(url, "m", variable="REDIS_URL")
    message = str(raised.value)
    assert message.startswith("REDIS_URL") and "TLS" in message and "s3cr3t" not in message
