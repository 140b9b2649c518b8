"""Poison events: isolated from their batch, dead-lettered alone, recovered once the handler is fixed."""

from __future__ import annotations

import json
import uuid

import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tests.conftest import CLI, send, wait_for

PICKY = "handler.pipeline.picky"


def picked(client: FlaskClient, run: str) -> list[str]:
    return client.get("/query/picked", query_string={"run": run}).get_json()


@pytest.mark.slow  # command-line processes
def test_one_poison_event_in_500_is_dead_lettered_alone_and_recovered_after_the_fix(
    client: FlaskClient, insights: Insights, cli: CLI
) -> None:
    run = uuid.uuid4().hex
    events = [{"id": f"{run}-{n}", "picky": run, **({"poison": True} if n == 321 else {})} for n in range(500)]
    state = send(client, events)
    assert state["failed"] == [PICKY]
    assert len(picked(client, run)) == 499 and f"{run}-321" not in picked(client, run)

    letters = [x for x in insights.dead_letters.list(PICKY) if x["batch"] in state["batches"]]
    assert len(letters) == 1
    (letter,) = letters
    assert [record[0] for record in letter["events"]] == [f"{run}-321"]
    assert letter["error"] == "ValueError: cannot digest a poison event"
    assert "Traceback" in letter["traceback"]

    listed = cli("deadletters", "list", "--handler", "picky")
    listing = listed.stdout
    assert letter["id"] in listing and "cannot digest a poison event" in listing
    assert "deadletters show ID for the traceback" in listed.stderr  # stdout: one line per letter
    shown = cli("deadletters", "show", letter["id"]).stdout
    for part in (letter["handler"], letter["batch"], letter["error"], letter["traceback"].strip()):
        assert part in shown, (part, shown)
    assert json.dumps(letter["events"], indent=2) in shown  # the events whole, as JSON
    assert "no dead letter '0-1'" in cli("deadletters", "show", "0-1", expect=2).stderr
    assert "not a dead letter id" in cli("deadletters", "show", "nonsense", expect=2).stderr

    assert client.get("/query/fix_picky").get_data(as_text=True) == "fixed"
    assert (
        "dispatched 1 letter(s) again as 1 batch(es)"
        in cli("deadletters", "retry", "--handler", "pipeline.picky").stdout
    )
    wait_for(lambda: f"{run}-321" in picked(client, run), what="the recovered event to be handled")
    assert len(picked(client, run)) == 500
    assert not [x for x in insights.dead_letters.list(PICKY) if x["id"] == letter["id"]]


@pytest.mark.slow  # a command-line process
def test_an_unknown_handler_name_is_a_clear_error(cli: CLI) -> None:
    result = cli("deadletters", "list", "--handler", "nope", expect=2)
    assert "'nope' is not a registered handler" in result.stderr
