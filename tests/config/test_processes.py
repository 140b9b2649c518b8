"""Process command lines: one source (config/processes.py) for the Procfile, ``run``, tests and benchmarks."""

from __future__ import annotations

import subprocess
import sys

from config.processes import Commands, placeholder, procfile, procfile_text
from config.settings import ROOT, Settings


def test_the_procfile_is_the_generated_one() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    written = {name: command.split(" ") for name, _, command in (line.partition(": ") for line in lines)}

    assert written == procfile(), "regenerate it: python -m config.processes --procfile > Procfile"
    assert (ROOT / "Procfile").read_text() == procfile_text()


def test_the_procfile_prints_from_the_command_line() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "config.processes", "--procfile"], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert printed.stdout == procfile_text()


def test_the_procfile_runs_every_queue_and_one_solo_worker_per_shard() -> None:
    processes = procfile()

    assert set(processes) == {"web", "batcher", "worker", "beat", "flower"} | {f"shard{k}" for k in range(4)}
    assert processes["shard3"] == Commands(python=None).shard_worker(
        ["events.user.3", "events.resource.3"], name="shard3@%h"
    )
    assert processes["shard3"][-4:] == ["-n", "shard3@%h", "--prefetch-multiplier", "1"]
    assert placeholder("WORKER_QUEUES", "views,queries,events,reports,batch") in processes["worker"]


def test_the_shell_fills_in_the_procfile_defaults() -> None:
    web = " ".join(procfile()["web"])
    expanded = subprocess.run(["sh", "-c", f"echo {web}"], env={}, capture_output=True, text=True, check=True)

    assert expanded.stdout.split() == Commands(python=None).web(
        "0.0.0.0:8000", workers=4, threads=Settings().web_threads, timeout=120
    )
    port = subprocess.run(["sh", "-c", f"echo {web}"], env={"PORT": "9000"}, capture_output=True, text=True)
    assert "0.0.0.0:9000" in port.stdout.split()


def test_programs_run_under_the_given_python_or_by_name() -> None:
    assert Commands(python="/py").batcher() == ["/py", "-m", "tasks", "batcher"]
    assert Commands(python=None).batcher() == ["python", "-m", "tasks", "batcher"]
    assert Commands(python="/py").beat() == ["/py", "-m", "celery", "-A", "tasks.worker", "beat", "-l", "INFO"]
    assert Commands(python=None).beat() == ["celery", "-A", "tasks.worker", "beat", "-l", "INFO"]
    assert Commands().web("h:1", workers=2)[:3] == [sys.executable, "-m", "gunicorn"]


def test_worker_options() -> None:
    quiet = Commands(python=None, loglevel="WARNING", quiet=True, app="bench.baseline")

    assert quiet.worker(["a", "b"], concurrency=2, name="n@%h") == [
        "celery", "-A", "bench.baseline", "worker", "-Q", "a,b", "-c", "2", "-l", "WARNING",
        "--without-mingle", "--without-gossip", "-n", "n@%h",
    ]  # fmt: skip
    assert quiet.worker("q", solo=True, concurrency=2)[5:8] == ["q", "-P", "solo"]  # solo: one process, no -c
    assert Commands(python=None).worker("q") == ["celery", "-A", "tasks.worker", "worker", "-Q", "q", "-l", "INFO"]


def test_web_and_flower_options() -> None:
    commands = Commands(python=None, graceful_timeout=5)

    assert commands.web("h:1", workers=2) == [
        "gunicorn", "-w", "2", "-b", "h:1", "--graceful-timeout", "5", "web.wsgi:app",
    ]  # fmt: skip
    assert commands.web("h:1", workers=2, threads=8, timeout=120)[3:10] == [
        "-k", "gthread", "--threads", "8", "-b", "h:1", "--timeout",
    ]  # fmt: skip
    assert commands.flower(5555) == ["celery", "-A", "tasks.worker", "flower", "--port=5555"]
    assert commands.flower(1, address="127.0.0.1")[-1] == "--address=127.0.0.1"
