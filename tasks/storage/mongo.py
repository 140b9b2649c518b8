"""``mongodb``: one database per analytics module on the configured MongoDB."""

from __future__ import annotations

import re

MAX_DB_NAME = 63


def database_name(prefix: str, module: str) -> str:
    """The database name that belongs to ``module`` (portable: no '.', '/', spaces; ≤ 63 bytes)."""
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", f"{prefix}{module}")
    return name[:MAX_DB_NAME]
