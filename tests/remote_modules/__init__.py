"""Modules of the two-server test (tests/tasks/test_remotes.py): each server loads one of them."""
