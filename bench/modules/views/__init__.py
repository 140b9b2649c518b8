"""Trivial views and queries for ``python -m bench.views``: latency of the web → worker hop itself."""

from tasks import memoize_query, query, view


@view()
def bench_hello(user):
    """A small HTML greeting: an uncached view that does no work."""
    return f"<html><body>Hello {user}!</body></html>"


@query()
def bench_echo(course):
    """A small dict: an uncached query that does no work."""
    return {"course": course, "learners": 3, "ok": True}


@memoize_query(cache_time=600)
@query()
def bench_memo(course):
    """A small dict, memoized: once cached, the web process answers it from Redis."""
    return {"course": course, "learners": 3, "memoized": True}
