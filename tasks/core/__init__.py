"""Running registered functions: the registry, calls between functions, the checks every
outside value passes, memoization, serialization, compositions, presenting results, and
runs started over HTTP. Imports ``errors``, ``storage`` and ``authoring``."""
