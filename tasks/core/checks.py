"""The checks every value from outside passes before it reaches a view or query.

Outside values are a caller's arguments (query string, form, JSON body, a chain step's
``args``) and a result fed from one chain step into the next. Whatever the channel, they
pass the same checks here; each failure is an ``ArgumentError`` (HTTP 400) that names the
argument without echoing a huge value back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from tasks.authoring.injection import INJECTED, signature
from tasks.codec.json_shape import MAX_DEPTH, too_deep, unicode_text
from tasks.errors import ArgumentError

MAX_NAME_LENGTH = 100  # characters of an argument name (or object key)
_MAPPING_ANNOTATIONS = ("dict", "Dict", "Mapping", "MutableMapping", "typing.Any", "Any")


def check_arguments(func: Callable[..., Any], arguments: Mapping[str, Any]) -> None:
    """Refuse caller arguments for ``func`` that no function should receive.

    Names must be short and not MongoDB operators; values must pass ``check_value``; an
    object (dict) is accepted only for a parameter annotated as a mapping (``dict``,
    ``Mapping``) or for ``params``: an unannotated parameter such as ``user`` or ``course``
    is a plain value, and a module passing it into a database filter must not be handed a
    sub-document.
    """
    for name, value in arguments.items():
        if name in INJECTED:  # never reaches the function: injected names win
            continue
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
            raise ArgumentError(f"argument name {shorten(name)} is longer than {MAX_NAME_LENGTH} characters")
        if name.startswith("$"):
            raise ArgumentError(f"argument name {shorten(name)} is an operator key; operator keys are not accepted")
        check_value(name, value)
        if isinstance(value, Mapping) and not _takes_mapping(func, name):
            raise ArgumentError(
                f"argument {shorten(name)} is an object; send a plain value "
                "(the parameter is not annotated as a dict or Mapping)"
            )


def check_value(name: str, value: Any) -> None:
    """Refuse a value holding MongoDB operator keys (``{"$gt": ""}``), over-long keys, text that is
    not valid Unicode (a lone surrogate such as ``"\\ud800"``), or nesting deeper than ``MAX_DEPTH``."""
    if too_deep(value):
        raise ArgumentError(f"argument {shorten(name)} is nested more than {MAX_DEPTH} levels deep")
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_text(name, item)
        elif isinstance(item, Mapping):
            for key in item:
                key_text = str(key)
                if key_text.startswith("$"):
                    raise ArgumentError(
                        f"argument {shorten(name)} holds the key {shorten(key_text)}; operator keys are not accepted"
                    )
                if len(key_text) > MAX_NAME_LENGTH:
                    raise ArgumentError(
                        f"argument {shorten(name)} holds a key longer than {MAX_NAME_LENGTH} characters"
                    )
                _check_text(name, key_text)
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)


def shorten(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to about ``limit`` characters (error messages never echo a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…' ({len(str(value))} characters)"


def _check_text(name: str, text: str) -> None:
    if not unicode_text(text):
        raise ArgumentError(f"argument {shorten(name)} holds text that is not valid Unicode (a lone surrogate)")


def _takes_mapping(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` declares its parameter ``name`` as taking objects (or takes any leftovers)."""
    parameter = signature(func).parameters.get(name)
    if parameter is None:  # a leftover for ``params`` / ``**kwargs``: free-form by the author's choice
        return True
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return False
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return any(text == a or text.startswith(f"{a}[") or text.endswith(f".{a}") for a in _MAPPING_ANNOTATIONS)
