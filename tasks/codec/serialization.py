"""JSON for task results: a tagged form that round-trips, and a plain form for HTTP.

``dumps``/``loads`` carry results between Celery tasks and through the Redis cache.
Values JSON lacks travel as ``{"__type__": marker, "__value__": ...}`` envelopes
and come back as the same kind of object: datetime, date, time, timedelta, Decimal,
UUID, bytes, set, frozenset, tuple, dicts with non-str keys, bson ObjectId, numpy
arrays and scalars, pandas Timestamp, Timedelta, NaT, NA, Index (incl. Range-,
Datetime- and MultiIndex), Series and DataFrame. ``to_plain``/``dumps_plain`` give
standard JSON for HTTP clients. No pickle is involved.

Limits: structured numpy dtypes, complex numbers, Period, Interval and other
unknown objects raise TypeError. A categorical keeps its values, not its category
list. A time zone comes back by name when it has one (zoneinfo, pytz), otherwise as
a fixed UTC offset. Subclasses of dict, list, str and int (other than numpy's) come
back as the base type. Self-referencing containers raise RecursionError.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

import kombu.serialization
import numpy as np
import pandas as pd
from bson import ObjectId

from config.celery import CONTENT_TYPE, SERIALIZER_NAME
from tasks.codec.json_shape import MAX_DEPTH, unicode_text

_PLAIN = frozenset({str, int, float, bool, type(None)})
_SAFE = _PLAIN - {float}  # plain types that are never NaN or inf
_STR = frozenset({str})
_CONTAINERS = _PLAIN | {dict, list}
_RISKY = (tuple, dict, list, np.generic)  # json encodes these without default()


def _unsupported(obj: Any) -> TypeError:
    return TypeError(
        f"Object of type {type(obj).__qualname__} is not JSON-serializable: task "
        "results must be JSON-serializable (numpy, pandas, datetime, Decimal, UUID, "
        "bytes, set, tuple and bson ObjectId are supported)"
    )


def _needs_prepare(obj: Any) -> bool:
    """Tell whether obj holds a tuple, non-str key, ... (level by level, C loops)."""
    items = [obj]
    for _ in range(MAX_DEPTH):
        kinds = set(map(type, items))
        if kinds <= _PLAIN:
            return False
        if any(issubclass(kind, _RISKY) for kind in kinds - _CONTAINERS):
            return True
        dicts = [item for item in items if type(item) is dict] if dict in kinds else []
        keys = set().union(*dicts)
        if "__type__" in keys or not _STR.issuperset(map(type, keys)):
            return True
        lists = [item for item in items if type(item) is list] if list in kinds else []
        items = [*chain.from_iterable(map(dict.values, dicts)), *chain(*lists)]
    return True


def _prepare(obj: Any) -> Any:
    """Tag what json would encode silently but wrongly: tuples, non-str keys, ..."""
    if type(obj) in _PLAIN:
        return obj
    if isinstance(obj, dict):
        if "__type__" in obj or not _STR.issuperset(map(type, obj)):
            return _as("dict", [[key, value] for key, value in obj.items()])
        if _PLAIN.issuperset(map(type, obj.values())):
            return obj
        return {key: _prepare(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return obj if _PLAIN.issuperset(map(type, obj)) else list(map(_prepare, obj))
    if isinstance(obj, tuple):
        return _as("tuple", list(obj))
    if isinstance(obj, np.generic):  # np.float64 and np.str_ subclass float and str
        return _encode(obj)
    return obj  # plain, or left to _encode through the encoder's default()


def _as(marker: str, value: Any) -> dict[str, Any]:
    return {"__type__": marker, "__value__": _prepare(value)}


def _encode_array(arr: np.ndarray) -> dict[str, Any]:
    if arr.dtype.kind == "O":
        return {"dtype": "object", "shape": list(arr.shape), "items": list(arr.flat)}
    if arr.dtype.kind == "V":
        raise _unsupported(arr)
    data = base64.b64encode(arr.tobytes()).decode("ascii")
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": data}


def _decode_array(value: dict[str, Any]) -> np.ndarray:
    if value["dtype"] == "object":
        out = np.empty(len(value["items"]), dtype=object)
        for i, item in enumerate(value["items"]):
            out[i] = item
        return out.reshape(value["shape"])
    raw = base64.b64decode(value["data"])
    return np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"]).copy()


def _values(obj: pd.Index | pd.Series) -> dict[str, Any]:
    """Dtype name and values: numpy dtypes as they are, extension dtypes as objects."""
    exact = isinstance(obj.dtype, np.dtype)
    values = obj.to_numpy() if exact else obj.to_numpy(dtype=object)
    return {"dtype": str(obj.dtype), "values": values}


def _encode_index(idx: pd.Index) -> dict[str, Any]:
    timed = isinstance(idx, (pd.DatetimeIndex, pd.TimedeltaIndex))
    return {"name": idx.name, "freq": idx.freqstr if timed else None, **_values(idx)}


def _decode_index(value: dict[str, Any]) -> pd.Index:
    idx = pd.Index(value["values"], dtype=value["dtype"], name=value["name"])
    return idx if value["freq"] is None else type(idx)(idx, freq=value["freq"])


def _encode_series(series: pd.Series) -> dict[str, Any]:
    return {"name": series.name, "index": series.index, **_values(series)}


def _encode_frame(frame: pd.DataFrame) -> dict[str, Any]:
    data = [_values(frame.iloc[:, i]) for i in range(frame.shape[1])]
    return {"columns": frame.columns, "index": frame.index, "data": data}


def _decode_frame(value: dict[str, Any]) -> pd.DataFrame:
    if not value["data"]:
        return pd.DataFrame(index=value["index"], columns=value["columns"])
    columns = [pd.Series(col["values"], dtype=col["dtype"]) for col in value["data"]]
    frame = pd.DataFrame(dict(enumerate(columns)))
    frame.index, frame.columns = value["index"], value["columns"]
    return frame


def _encode_multi(idx: pd.MultiIndex) -> list[Any]:
    return [list(idx.names), *map(idx.get_level_values, range(idx.nlevels))]


def _iso_tz(moment: datetime) -> list[str | None]:
    tz: tzinfo | None = moment.tzinfo
    return [moment.isoformat(), getattr(tz, "key", None) or getattr(tz, "zone", None)]


def _in_tz(moment: datetime, tz: str | None) -> Any:
    return moment if tz is None else moment.astimezone(ZoneInfo(tz))


# One row per type: (type, marker, encode, decode). First matching type wins: subclasses before bases.
_CODECS: list[tuple[type, str, Callable[[Any], Any], Callable[[Any], Any]]] = [
    (type(pd.NaT), "NaT", lambda o: None, lambda v: pd.NaT),
    (type(pd.NA), "NA", lambda o: None, lambda v: pd.NA),
    (pd.Timestamp, "Timestamp", _iso_tz, lambda v: _in_tz(pd.Timestamp(v[0]), v[1])),
    (datetime, "datetime", _iso_tz, lambda v: _in_tz(datetime.fromisoformat(v[0]), v[1])),
    (date, "date", date.isoformat, date.fromisoformat),
    (time, "time", time.isoformat, time.fromisoformat),
    (pd.Timedelta, "Timedelta", lambda o: o.isoformat(), pd.Timedelta),
    (timedelta, "timedelta", lambda o: [o.days, o.seconds, o.microseconds], lambda v: timedelta(*v)),
    (Decimal, "decimal", str, Decimal),
    (uuid.UUID, "uuid", str, uuid.UUID),
    (ObjectId, "objectid", str, ObjectId),
    (bytes, "bytes", lambda o: base64.b64encode(o).decode("ascii"), base64.b64decode),
    (frozenset, "frozenset", list, frozenset),
    (set, "set", list, set),
    (tuple, "tuple", list, tuple),  # reached through _prepare: json encodes tuples as lists itself
    (np.ndarray, "ndarray", _encode_array, _decode_array),
    (np.generic, "numpy", lambda o: _encode_array(np.asarray(o)), lambda v: _decode_array(v)[()]),
    (pd.MultiIndex, "MultiIndex", _encode_multi, lambda v: pd.MultiIndex.from_arrays(v[1:], names=v[0])),
    (
        pd.RangeIndex,
        "RangeIndex",
        lambda o: [o.start, o.stop, o.step, o.name],
        lambda v: pd.RangeIndex(*v[:3], name=v[3]),
    ),
    (pd.Index, "Index", _encode_index, _decode_index),
    (pd.Series, "Series", _encode_series, lambda v: pd.Series(v["values"], v["index"], v["dtype"], v["name"])),
    (pd.DataFrame, "DataFrame", _encode_frame, _decode_frame),
]
_DECODERS = {marker: decode for _, marker, _, decode in _CODECS} | {"dict": dict}  # dict: see _prepare


def _encode(obj: Any) -> dict[str, Any]:
    for kind, marker, encode, _ in _CODECS:
        if isinstance(obj, kind):
            return _as(marker, encode(obj))
    raise _unsupported(obj)


def _object_hook(obj: dict[str, Any]) -> Any:
    marker = obj.get("__type__")
    if marker is None:
        return obj
    if marker not in _DECODERS:
        raise ValueError(f"unknown __type__ {marker!r} in serialized data")
    return _DECODERS[marker](obj["__value__"])


class _Encoder(json.JSONEncoder):
    """JSON encoder that wraps non-JSON values in tagged envelopes."""

    def default(self, o: Any) -> Any:
        """Return the tagged envelope for o, or raise TypeError."""
        return _encode(o)


_ENCODER = _Encoder(ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = _Encoder(ensure_ascii=True, separators=(",", ":"))
_DECODER = json.JSONDecoder(object_hook=_object_hook)
_PLAIN_DECODER = json.JSONDecoder()


def dumps(obj: Any) -> str:
    """Serialize obj to tagged JSON that loads() turns back into the same types."""
    prepared = _prepare(obj) if _needs_prepare(obj) else obj
    return _utf8_safe(_ENCODER.encode(prepared), lambda: _ASCII_ENCODER.encode(prepared))


def _utf8_safe(text: str, as_ascii: Callable[[], str]) -> str:
    """``text``, or the all-ASCII encoding when text holds a lone surrogate (``"\\ud800"``), which
    no UTF-8 message can carry: the value then still travels, as a JSON escape."""
    return text if text.isascii() or unicode_text(text) else as_ascii()


def loads(data: str | bytes) -> Any:
    """Deserialize tagged JSON produced by dumps()."""
    text = data if isinstance(data, str) else str(data, "utf-8")
    return (_DECODER if '"__type__"' in text else _PLAIN_DECODER).decode(text)


def register_kombu_serializer() -> None:
    """Register dumps/loads with kombu as SERIALIZER_NAME (safe to call repeatedly)."""
    kombu.serialization.register(SERIALIZER_NAME, dumps, loads, content_type=CONTENT_TYPE, content_encoding="utf-8")


def _plain_key(key: Any) -> str:
    if type(key) is str:
        return key
    plain = to_plain(key)
    return plain if isinstance(plain, str) else json.dumps(plain)


def to_plain(obj: Any) -> Any:
    """Convert obj to plain JSON-compatible Python for HTTP; NaN, NaT, inf -> None."""
    if type(obj) in _SAFE:
        return obj
    if isinstance(obj, float):  # also np.float64
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        if _STR.issuperset(map(type, obj)) and _SAFE.issuperset(map(type, obj.values())):
            return obj
        return {_plain_key(key): to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, pd.Index)):
        return list(map(to_plain, obj))
    if isinstance(obj, pd.DataFrame):
        idx = obj.index
        default = isinstance(idx, pd.RangeIndex) and (idx.start, idx.step) == (0, 1)
        frame = obj if default and idx.name is None else obj.reset_index()
        return to_plain(frame.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return {_plain_key(key): to_plain(value) for key, value in obj.items()}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "mM":  # through pandas: tolist() gives ints for [ns]
            obj = pd.Series(obj.ravel()).astype(object).to_numpy().reshape(obj.shape)
        return to_plain(obj.tolist())
    if isinstance(obj, np.datetime64):
        return to_plain(pd.Timestamp(obj))
    if isinstance(obj, np.timedelta64):
        return to_plain(pd.Timedelta(obj))
    if isinstance(obj, np.generic):
        return to_plain(obj.item())
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, (str, int)):  # StrEnum, IntEnum, ...
        return str(obj) if isinstance(obj, str) else int(obj)
    if isinstance(obj, Decimal):
        return to_plain(float(obj))
    if isinstance(obj, (uuid.UUID, ObjectId)):
        return str(obj)
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(obj).decode("ascii")
    raise _unsupported(obj)


def dumps_plain(obj: Any) -> str:
    """Serialize obj as strict standard JSON (no NaN or inf), non-ASCII kept as is."""
    try:  # fast path: json takes plain data as it is and calls to_plain on the rest
        text = _STRICT_ENCODER.encode(obj)
    except (TypeError, ValueError):  # NaN or inf, or keys json cannot take
        obj = to_plain(obj)
        text = _STRICT_ENCODER.encode(obj)
    return _utf8_safe(text, lambda: _STRICT_ASCII_ENCODER.encode(obj))


_STRICT_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=to_plain)
_STRICT_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=to_plain)
