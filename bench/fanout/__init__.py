"""Trivial handler modules of ``bench.batcher``: one handler (``h1``) and ten (``h10``); four are ``bench.modules``.

Not a child of ``bench.modules``: each is loaded by name (``INSIGHTS_MODULES=bench.fanout.h1``).
"""
