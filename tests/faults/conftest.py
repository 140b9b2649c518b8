"""Fault tests: the per-fault table, printed and written to var/faults.md at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import REPORT, write_report


@pytest.fixture(scope="session")
def fault_report() -> Iterator[list[str]]:
    """Rows the fault tests add (one per fault); the table is written when the session ends."""
    rows: list[str] = []
    yield rows
    if rows:
        text = write_report(rows)
        print(f"\n{text}(written to {REPORT})")
