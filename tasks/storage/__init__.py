"""Per-module storage the framework injects: database, file store, cache."""
