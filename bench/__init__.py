"""Benchmarks of the event pipeline (``python -m bench.ingest``); see bench/README.md."""
