"""The checks every value from outside passes before it reaches a view or query.

Outside values are a caller's arguments (query string, form, JSON body, a chain step's
``args``) and a result fed from one chain step into the next. Whatever the channel, they
pass the same checks here; each failure is an ``ArgumentError`` (HTTP 400) that names the
argument without echoing a huge value back.

Values are also converted to the type a parameter declares — its annotation (``int``,
``float``, ``bool``, ``str``, ``X | None``, ``list[X]``) or, unannotated, the type of its
default (``days=7`` is an int): text from any channel is parsed (a query string's
``days=3`` reaches the function as ``3``; so does a JSON ``"3"``), typed values are checked
(a JSON ``true`` is no int; an int is fine for a float). See ``convert``.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tasks.authoring.injection import INJECTED, signature
from tasks.codec.json_shape import MAX_DEPTH, too_deep, unicode_text
from tasks.errors import ArgumentError

MAX_NAME_LENGTH = 100  # characters of an argument name (or object key)
_MAPPING_ANNOTATIONS = ("dict", "Dict", "Mapping", "MutableMapping", "typing.Any", "Any")
MAX_INT = 2**63 - 1  # ints are bounded to 64 bits (MongoDB's widest integer); beyond: 400
MIN_INT = -(2**63)
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,30}")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]{1,400}(?:\.[0-9]{0,400})?|\.[0-9]{1,400})(?:[eE][+-]?[0-9]{1,5})?")


@dataclass(frozen=True)
class Expected:
    """The type a parameter declares: a scalar type, maybe a list of it, maybe None allowed."""

    scalar: type
    is_list: bool = False
    optional: bool = False

    def __str__(self) -> str:
        text = f"list[{self.scalar.__name__}]" if self.is_list else self.scalar.__name__
        return f"{text} | None" if self.optional else text


def check_arguments(func: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse caller arguments for ``func`` that no function should receive; answer them converted
    to the types the parameters declare (``convert``).

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
    return convert(func, arguments)


def convert(func: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` with each value converted to the type its parameter declares (``expected_type``);
    ``ArgumentError`` naming the parameter, the value and the type for a value that does not convert.

    Text is parsed whatever the channel (query string, form, JSON, chain step, fed result):
    ``int`` takes decimal digits, at most 64 bits; ``float`` takes a decimal number, never
    NaN or ±inf (a module that wants them takes ``str``); ``bool`` takes true/false, 1/0,
    yes/no, on/off in any case. Typed values are checked: a bool is not an int or a float,
    an int is fine for a float (converted), 0 and 1 are fine for a bool, a float is not an
    int; ``None`` only for ``X | None`` or a parameter defaulting to None. ``list[X]`` takes
    a list (JSON, a chain step, a fed result) and converts each item; a single text value is
    refused. Parameters with no such type (unannotated without a default, ``dict``, ``Any``,
    anything else) get their values unchanged.
    """
    converted = dict(arguments)
    for name, value in arguments.items():
        if name in INJECTED or not isinstance(name, str):
            continue
        expected = expected_type(func, name)
        if expected is not None:
            converted[name] = _convert(name, value, expected)
    return converted


def expected_type(func: Callable[..., Any], name: str) -> Expected | None:
    """The type parameter ``name`` of ``func`` declares, or None if it declares none that converts."""
    return _expected_types(func).get(name)


@lru_cache(maxsize=4096)
def _expected_types(func: Callable[..., Any]) -> dict[str, Expected]:
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation naming what the module cannot resolve: read the raw ones
        hints = {}
    found = {}
    for parameter in signature(func).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.name in INJECTED:
            continue
        annotation = hints.get(parameter.name, parameter.annotation)
        default = parameter.default
        if annotation is inspect.Parameter.empty:
            kind = type(default)
            expected = Expected(kind) if kind in SCALARS.values() else None
        else:
            expected = _from_annotation(annotation)
        if expected is not None and default is None:
            expected = Expected(expected.scalar, expected.is_list, optional=True)
        if expected is not None:
            found[parameter.name] = expected
    return found


def _from_annotation(annotation: Any) -> Expected | None:
    if isinstance(annotation, str):
        return _from_text(annotation)
    if annotation in SCALARS.values():
        return Expected(annotation)
    origin, members = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        others = [m for m in members if m is not type(None)]
        if len(others) != 1:
            return None
        inner = _from_annotation(others[0])
        optional = len(others) < len(members)
        return Expected(inner.scalar, inner.is_list, optional) if inner is not None else None
    if origin is list and len(members) == 1 and members[0] in SCALARS.values():
        return Expected(members[0], is_list=True)
    return None


def _from_text(text: str) -> Expected | None:
    """An annotation left as text (unresolvable under ``from __future__ import annotations``)."""
    parts = [p.strip().strip("'\"") for p in text.strip().strip("'\"").split("|")]
    optional = "None" in parts
    others = [p for p in parts if p != "None"]
    if len(others) != 1:
        return None
    core = others[0]
    match = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", core)
    if match:
        core, optional = match.group(1).strip(), True
    match = re.fullmatch(r"(?:list|List|typing\.List)\[(\w+)\]", core)
    if match and match.group(1) in SCALARS:
        return Expected(SCALARS[match.group(1)], is_list=True, optional=optional)
    return Expected(SCALARS[core], optional=optional) if core in SCALARS else None


def _convert(name: str, value: Any, expected: Expected) -> Any:
    if value is None and expected.optional:
        return None
    if expected.is_list:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(name, value, expected, " (send a JSON list)")
        return [_scalar(name, item, expected.scalar, expected) for item in value]
    return _scalar(name, value, expected.scalar, expected)


def _scalar(name: str, value: Any, scalar: type, expected: Expected) -> Any:
    if scalar is str:
        if isinstance(value, str):
            return value
    elif scalar is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
    elif scalar is int:
        whole = _int_of(value)
        if whole is not None:
            if not MIN_INT <= whole <= MAX_INT:
                raise _mismatch(name, value, expected, " (out of the 64-bit range)")
            return whole
    elif scalar is float:
        number = _float_of(value)
        if number is not None:
            if not math.isfinite(number):
                raise _mismatch(name, value, expected, " (NaN and infinities are not accepted)")
            return number
    raise _mismatch(name, value, expected)


def _int_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _float_of(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if MIN_INT <= value <= MAX_INT else math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value.strip())
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return math.nan
    return None


def _mismatch(name: str, value: Any, expected: Expected, why: str = "") -> ArgumentError:
    return ArgumentError(f"argument {shorten(name)} got {shorten(value)}: expected {expected}{why}")


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
