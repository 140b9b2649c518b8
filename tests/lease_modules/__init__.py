"""Modules of the single-active tests (tests/tasks/test_shard_leases.py), loaded only by them."""
