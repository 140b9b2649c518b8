"""Registered only on server B."""

from tasks import query


@query()
def callee_square(n: int):
    """n squared, computed on server B."""
    return {"square": int(n) ** 2, "server": "B"}
