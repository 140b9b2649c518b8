"""Analytics modules loaded by the benchmark deployment (``INSIGHTS_MODULES=bench.modules``)."""
