"""How the command line finds the running system: ``run.json``, ``--help`` with no configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from config.runfile import read_run_file, recorded_urls, run_file_path, write_run_file
from config.settings import ROOT, Settings
from tasks.ops.cli import main
from tasks.ops.embedded import free_port
from tests.conftest import wait_for

COMMANDS = ["run", "batcher", "deadletters", "conflicts", "recompute", "fs-migrate", "replay", "tokens", "generate"]
URL_VARIABLES = ("REDIS_URL", "BROKER_URL", "MONGO_URL")


def bare_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment with no Redis, broker or MongoDB URL configured, and ``data_dir`` as the data dir."""
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES and not k.startswith(("INSIGHTS_", "QUEUE_"))}
    return dict(env, INSIGHTS_DATA_DIR=str(data_dir), **extra)


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasks", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def unconfigured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No Redis, broker nor MongoDB URL in the environment; an empty data dir (returned)."""
    for variable in URL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("INSIGHTS_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_subcommand_needs_no_configuration(
    command: str, unconfigured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([command, "--help"])
    except SystemExit as exit:  # argparse's own --help
        code = exit.code
    assert code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and command in out


def test_without_urls_nor_a_running_system_the_error_says_what_to_do(
    unconfigured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deadletters", "list"]) == 2
    assert (
        "no Redis configured: set REDIS_URL, or start `bin/insights run` "
        f"(it records its servers in {unconfigured / 'run.json'})" in capsys.readouterr().err
    )


@pytest.mark.slow  # a command-line subprocess
@pytest.mark.parametrize("command", ["deadletters", "replay"])
def test_help_needs_no_configuration_from_the_shell(command: str, tmp_path: Path) -> None:
    done = cli(bare_env(tmp_path), command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and command in done.stdout


@pytest.mark.slow  # a command-line subprocess
def test_without_urls_nor_a_running_system_the_shell_gets_the_error(tmp_path: Path) -> None:
    done = cli(bare_env(tmp_path), "deadletters", "list")
    assert done.returncode == 2
    assert "no Redis configured: set REDIS_URL, or start `bin/insights run` (it records" in done.stderr
    assert str(tmp_path / "run.json") in done.stderr


def test_the_recorded_urls_are_read_back_while_their_process_lives(tmp_path: Path) -> None:
    urls = {"redis_url": "redis://127.0.0.1:1/0", "mongo_url": "mongodb://127.0.0.1:2", "web_url": "http://x:3"}
    path = write_run_file(tmp_path, urls, pid=os.getpid())
    assert path == run_file_path(tmp_path) == tmp_path / "run.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert recorded_urls(tmp_path) == (urls, None)
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: nothing left beside it


def test_a_stale_or_missing_run_file_gives_no_urls(tmp_path: Path) -> None:
    assert recorded_urls(tmp_path) == ({}, None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_run_file(tmp_path, {"redis_url": "redis://127.0.0.1:1/0"}, pid=int(dead.stdout))
    urls, note = recorded_urls(tmp_path)
    assert urls == {} and note is not None
    assert "not running" in note and str(tmp_path / "run.json") in note
    record = read_run_file(tmp_path)  # still readable, for the ports of the next start
    assert record is not None and record.urls["redis_url"] == "redis://127.0.0.1:1/0" and not record.alive
    (tmp_path / "run.json").write_text("{not json")
    assert recorded_urls(tmp_path)[0] == {} and "could not be read" in (recorded_urls(tmp_path)[1] or "")


@pytest.mark.slow
def test_commands_find_the_servers_of_a_running_system(tmp_path: Path) -> None:
    env = bare_env(tmp_path, INSIGHTS_PORT=str(free_port()))
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tasks", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    run_json = tmp_path / "run.json"
    try:
        recorded = wait_for(lambda: read_run_file(tmp_path), timeout=60, what="run.json")
        assert recorded.pid == process.pid and recorded.alive
        assert {"redis_url", "mongo_url", "broker_url", "web_url"} <= set(recorded.urls)
        assert run_json.stat().st_mode & 0o777 == 0o600
        done = cli(env, "deadletters", "list")
        assert done.returncode == 0, done.stderr
        ports = {name: recorded.urls[name].rsplit(":", 1)[1].split("/")[0] for name in ("redis_url", "mongo_url")}
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert not run_json.exists()
    # Started again, the embedded servers take the same ports (they are free again).
    process = subprocess.Popen(
        [sys.executable, "-m", "tasks", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        again = wait_for(lambda: read_run_file(tmp_path), timeout=60, what="run.json again")
        for name, port in ports.items():
            assert again.urls[name].rsplit(":", 1)[1].split("/")[0] == port
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()[-3000:]


def test_configured_urls_win_over_the_recorded_ones() -> None:
    recorded = {"redis_url": "redis://rec:1/0", "mongo_url": "mongodb://rec:2", "broker_url": "redis://rec:1/0"}
    assert Settings().with_recorded_urls(recorded).broker == "redis://rec:1/0"
    mine = Settings(redis_url="redis://mine:3/0").with_recorded_urls(recorded)
    assert (mine.redis, mine.broker, mine.mongo) == ("redis://mine:3/0", "redis://mine:3/0", "mongodb://rec:2")
    amqp = Settings(broker_url="amqp://b//", mongo_url="mongodb://m").with_recorded_urls(recorded)
    assert (amqp.redis, amqp.broker, amqp.mongo) == ("redis://rec:1/0", "amqp://b//", "mongodb://m")
