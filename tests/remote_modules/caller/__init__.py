"""Registered only on server A: calls a query that only server B has (through INSIGHTS_REMOTES)."""

from tasks import query


@query()
def caller_square_plus_one(query, n: int):
    """B's square of n, plus one, computed on server A."""
    answer = query.callee_square(n=n)
    return {"value": answer["square"] + 1, "from": answer["server"]}
