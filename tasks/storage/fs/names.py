"""File names in a module's store: relative POSIX paths inside it, without control characters."""

from __future__ import annotations

from pathlib import PurePosixPath

from tasks.errors import ArgumentError


def split_name(filename: str) -> tuple[str, ...]:
    """The parts of ``filename`` (``a/./b//c`` -> ``("a", "b", "c")``); refuses names that would
    leave the store. Control characters are not checked here (see ``checked_name``)."""
    text = str(filename)
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if not parts or parts[0].startswith("/") or any(p in ("..", "") for p in parts) or "\x00" in text:
        raise ArgumentError(f"file name {filename!r} is not a relative path inside the module's store")
    return parts


def checked_name(filename: str) -> str:
    """``filename`` as the store keys it (``reports/a.csv``); refuses names that would leave the
    store, and names holding a control character (CR, LF, ESC…: no HTTP header could name such a
    file, so ``/fs`` could not serve it, and a log line could be forged with it)."""
    name = "/".join(split_name(filename))
    if has_control_character(str(filename)):
        raise ArgumentError(f"file name {filename!r} holds a control character; use printable names")
    return name


def loose_name(filename: str) -> str:
    """``checked_name`` without the control-character rule: for removing files named before it held."""
    return "/".join(split_name(filename))


def parent_of(name: str) -> str:
    """The folder holding ``name`` (``""`` for the store's top)."""
    return name.rpartition("/")[0]


def folders_above(name: str) -> list[str]:
    """Every folder above ``name``, outermost first (``a/b/c`` -> ``["a", "a/b"]``)."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def has_control_character(name: str) -> bool:
    """Whether ``name`` holds a control character (C0, DEL or C1: ``\\x00``-``\\x1f``, ``\\x7f``-``\\x9f``)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name)
