"""Tests for tasks.codec.serialization: tagged round trips, plain JSON, kombu registration."""

from __future__ import annotations

import json
import math
import uuid
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import kombu.serialization
import numpy as np
import pandas as pd
import pytest
from bson import ObjectId

from tasks.codec.serialization import (
    CONTENT_TYPE,
    SERIALIZER_NAME,
    dumps,
    dumps_plain,
    loads,
    register_kombu_serializer,
    to_plain,
)

PARIS = ZoneInfo("Europe/Paris")


def roundtrip(value: Any) -> Any:
    text = dumps(value)
    assert isinstance(text, str)
    json.loads(text)  # always valid JSON (NaN tokens allowed between Python ends)
    return loads(text)


def assert_same(result: Any, expected: Any) -> None:
    """Equal, and of the same type all the way down (NaN equals NaN)."""
    assert type(result) is type(expected), (result, expected)
    if isinstance(expected, (list, tuple)):
        assert len(result) == len(expected)
        for got, want in zip(result, expected, strict=True):
            assert_same(got, want)
    elif isinstance(expected, dict):
        assert len(result) == len(expected)
        for (got_key, got), (want_key, want) in zip(result.items(), expected.items(), strict=True):
            assert_same(got_key, want_key)
            assert_same(got, want)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(result)
    else:
        assert result == expected
        if isinstance(expected, (datetime, time)):
            assert result.utcoffset() == expected.utcoffset()
            assert getattr(result.tzinfo, "key", None) == getattr(expected.tzinfo, "key", None)


# --- standard library and bson ----------------------------------------------

STDLIB_VALUES = {
    "str-non-ascii": "héllo ✓ 日本",
    "str-looking-like-envelope": '{"__type__": "tuple", "__value__": []}',
    "int-big": 2**70,
    "float-nan": float("nan"),
    "float-inf": float("-inf"),
    "plain-nested": {"a": [1, 2.5, None, True, {"b": "c"}], "d": {}},
    "datetime-naive": datetime(2024, 5, 6, 7, 8, 9, 123456),
    "datetime-zoneinfo": datetime(2024, 5, 6, 7, 8, 9, tzinfo=PARIS),
    "datetime-utc": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    "datetime-offset": datetime(2024, 5, 6, tzinfo=timezone(timedelta(hours=-3))),
    "date": date(2024, 2, 29),
    "time": time(23, 59, 1, 5),
    "time-tz": time(1, 2, 3, tzinfo=timezone(timedelta(hours=2))),
    "timedelta": timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": Decimal("1.10"),
    "decimal-nan": Decimal("Infinity"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes-utf8": "café".encode(),
    "bytes-binary": b"\x00\xff\xfe",
    "set": {1, "a", (2, 3)},
    "frozenset": frozenset({1, 2}),
    "set-empty": set(),
    "tuple": (1, "a", None),
    "tuple-empty": (),
    "tuple-nested": (1, (2, (3,)), [4, (5,)]),
    "tuple-in-list-in-dict": {"a": [{"b": [(1, 2)]}]},
    "list-of-tuples": [(1, 2), (3, 4)],
    "dict-int-keys": {1: "a", 2: "b"},
    "dict-mixed-keys": {"a": 1, 2: "b", None: 3, 1.5: 4, True: 5},
    "dict-tuple-keys": {(1, "x"): [1], ("y",): {2}},
    "dict-int-keys-deep": {"a": {"b": {"c": {1: 2}}}},
    "dict-with-type-key": {"__type__": "tuple", "__value__": [1]},
    "dict-with-type-key-deep": [{"x": {"__type__": "nope"}}],
    "objectid": ObjectId("65a1b2c3d4e5f60718293a4b"),
    "celery-body": ((1, "x"), {"k": (2,)}, {"callbacks": None, "chord": None}),
}


@pytest.mark.parametrize("value", STDLIB_VALUES.values(), ids=STDLIB_VALUES.keys())
def test_roundtrip_stdlib_and_bson(value: Any) -> None:
    assert_same(roundtrip(value), value)


def test_plain_data_is_encoded_as_plain_json() -> None:
    events = [{"event": f"e{i}", "n": i, "x": 0.5, "ok": True, "ctx": {"a": [1]}} for i in range(3)]
    text = dumps(events)
    assert text == json.dumps(events, separators=(",", ":"))
    assert loads(text) == events
    assert loads(text.encode()) == events


def test_subclasses_of_json_containers() -> None:
    value = OrderedDict(a=(1, 2), b=[np.int64(3)])
    assert_same(roundtrip(value), {"a": (1, 2), "b": [np.int64(3)]})


def test_loads_rejects_unknown_marker() -> None:
    with pytest.raises(ValueError, match="nope"):
        loads('{"__type__": "nope", "__value__": 1}')


class Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [Opaque(), {"deep": [Opaque()]}, 1j, np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])],
    ids=["object", "nested-object", "complex", "structured-array"],
)
def test_unknown_objects_raise_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match=r"not JSON-serializable.*numpy, pandas, datetime"):
        dumps(value)


def test_type_error_names_the_type() -> None:
    with pytest.raises(TypeError, match="Opaque"):
        dumps([Opaque()])
    with pytest.raises(TypeError, match="Opaque"):
        dumps_plain({"a": Opaque()})


# --- numpy ----------------------------------------------------------------------

ARRAYS = {
    "int64-2d": np.arange(12, dtype=np.int64).reshape(3, 4),
    "uint8": np.array([0, 255], dtype=np.uint8),
    "float32-nan-inf": np.array([0.1, np.nan, np.inf], dtype=np.float32),
    "float64-0d": np.array(3.5),
    "empty": np.empty((0, 3)),
    "bool": np.array([[True, False], [False, True]]),
    "complex": np.array([1 + 2j, -3j]),
    "big-endian": np.array([1, 2], dtype=">i4"),
    "fortran-order": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "strided-view": np.arange(10)[::3],
    "datetime64-ns-nat": np.array(["2024-01-01T00:00:00.000000001", "NaT"], dtype="M8[ns]"),
    "datetime64-D": np.array(["2024-01-01", "2024-02-01"], dtype="M8[D]"),
    "timedelta64": np.array([1, -2], dtype="m8[s]"),
    "unicode": np.array(["a", "héllo"]),
}


@pytest.mark.parametrize("array", ARRAYS.values(), ids=ARRAYS.keys())
def test_roundtrip_numeric_arrays(array: np.ndarray) -> None:
    result = roundtrip(array)
    assert type(result) is np.ndarray
    assert result.dtype == array.dtype
    assert result.shape == array.shape
    np.testing.assert_array_equal(result, array)
    assert result.flags.writeable


def test_roundtrip_object_array() -> None:
    array = np.empty((2, 2), dtype=object)
    array[:] = [[1, "a"], [None, None]]
    array[1, 0] = (1, 2)
    array[1, 1] = {"k": [datetime(2024, 1, 1)]}
    result = roundtrip(array)
    assert result.dtype == object
    assert result.shape == (2, 2)
    np.testing.assert_array_equal(result, array)
    assert_same(result[1, 0], (1, 2))


SCALARS = {
    "int8": np.int8(-5),
    "int64": np.int64(2**62),
    "uint64": np.uint64(2**64 - 1),
    "float16": np.float16(0.1),
    "float32": np.float32(0.1),
    "float64": np.float64(0.1),
    "float64-nan": np.float64("nan"),
    "bool": np.bool_(True),
    "complex128": np.complex128(1 - 1j),
    "datetime64": np.datetime64("2024-01-01T00:00:00.000000001"),
    "datetime64-nat": np.datetime64("NaT", "s"),
    "timedelta64": np.timedelta64(5, "ms"),
    "str": np.str_("héllo"),
}


@pytest.mark.parametrize("scalar", SCALARS.values(), ids=SCALARS.keys())
def test_roundtrip_numpy_scalars(scalar: np.generic) -> None:
    for result in (roundtrip(scalar), roundtrip([scalar])[0], roundtrip({"k": scalar})["k"]):
        assert type(result) is type(scalar)
        assert result.dtype == scalar.dtype
        np.testing.assert_array_equal(result, scalar)


# --- pandas ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pd.Timestamp("2024-01-02 03:04:05.000000001"),
        pd.Timestamp("2024-01-02 03:04:05", tz="Europe/Paris"),
        pd.Timestamp("2024-01-02", tz="UTC"),
        pd.Timedelta("1 days 00:00:00.000000001"),
        pd.Timedelta("-3s"),
    ],
    ids=["ts-naive-ns", "ts-paris", "ts-utc", "timedelta", "timedelta-negative"],
)
def test_roundtrip_pandas_scalars(value: Any) -> None:
    result = roundtrip(value)
    assert type(result) is type(value)
    assert result == value
    assert str(getattr(result, "tz", None)) == str(getattr(value, "tz", None))


def test_roundtrip_missing_markers() -> None:
    assert roundtrip(pd.NaT) is pd.NaT
    assert roundtrip([pd.NA])[0] is pd.NA


def sample_frame() -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=3, freq="D", name="day")
    return pd.DataFrame(
        {
            "count": [1, 2, 3],
            "score": [0.5, np.nan, 1.5],
            "user": ["ann", "bob", None],
            "mixed": pd.Series(["x", 1, None], index=index, dtype=object),
            "passed": [True, False, True],
            "seen": pd.to_datetime(["2024-01-01 10:00", None, "2024-01-03 12:30"]),
            "seen_tz": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
        },
        index=index,
    )


FRAMES = {
    "mixed-datetimeindex": sample_frame(),
    "named-rangeindex": sample_frame().reset_index().rename_axis("row"),
    "default-index": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    "empty": pd.DataFrame(),
    "empty-with-columns": pd.DataFrame({"a": pd.Series([], dtype="int64")}),
    "int-column-labels": pd.DataFrame([[1, 2], [3, 4]], columns=[10, 20], index=[5, 5]),
    "string-index": pd.DataFrame({"v": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="k")),
    "multiindex-rows": sample_frame().reset_index().set_index(["user", "count"]),
    "multiindex-columns": pd.DataFrame(
        [[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)], names=["x", "y"])
    ),
    "category": pd.DataFrame({"c": pd.Categorical(["a", "b", "a"])}),
}


@pytest.mark.parametrize("frame", FRAMES.values(), ids=FRAMES.keys())
def test_roundtrip_dataframes(frame: pd.DataFrame) -> None:
    result = roundtrip(frame)
    assert type(result) is pd.DataFrame
    pd.testing.assert_frame_equal(result, frame)


def test_dataframe_keeps_default_str_dtype_and_freq() -> None:
    frame = sample_frame()
    result = roundtrip(frame)
    assert result["user"].dtype == frame["user"].dtype
    assert str(frame["user"].dtype) == "str"  # pandas 3 default for strings
    assert result.index.freq == frame.index.freq == "D"
    assert result["seen_tz"].dt.tz == frame["seen_tz"].dt.tz


SERIES = {
    "int": pd.Series([1, 2, 3], name="n"),
    "float-nan-tuple-name": pd.Series([1.5, np.nan], name=("a", 1)),
    "str": pd.Series(["a", None, "c"], index=[3, 1, 2]),
    "object": pd.Series([1, "a", None, (1, 2)], dtype=object),
    "bool": pd.Series([True, False]),
    "datetime-index": sample_frame()["score"],
    "tz-aware": pd.Series(pd.date_range("2024-03-30", periods=3, freq="h", tz="Europe/Paris")),
    "timedelta": pd.Series(pd.to_timedelta([1, None], unit="s")),
    "nullable-boolean": pd.Series([True, None], dtype="boolean"),
    "value-counts": pd.Series(["a", "b", "a"]).value_counts(),
    "empty": pd.Series([], dtype="float64"),
}


@pytest.mark.parametrize("series", SERIES.values(), ids=SERIES.keys())
def test_roundtrip_series(series: pd.Series) -> None:
    result = roundtrip(series)
    assert type(result) is pd.Series
    pd.testing.assert_series_equal(result, series)


INDEXES = {
    "range-named": pd.RangeIndex(2, 20, 3, name="r"),
    "str": pd.Index(["a", "b"], name="letters"),
    "datetime-freq": pd.date_range("2024-01-01", periods=4, freq="15min", name="t"),
    "timedelta": pd.timedelta_range("1s", periods=3, freq="s"),
    "multi": pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["x", None]),
}


@pytest.mark.parametrize("index", INDEXES.values(), ids=INDEXES.keys())
def test_roundtrip_indexes(index: pd.Index) -> None:
    result = roundtrip(index)
    assert type(result) is type(index)
    pd.testing.assert_index_equal(result, index, exact=True)
    assert getattr(result, "freq", None) == getattr(index, "freq", None)


def test_value_counts_dict_keeps_int_keys() -> None:
    counts = pd.Series([3, 1, 3, 3]).value_counts().to_dict()
    assert_same(roundtrip(counts), counts)


def test_results_nested_in_plain_structures() -> None:
    result = roundtrip({"frame": sample_frame(), "arrays": (np.arange(3), np.ones(2, bool))})
    pd.testing.assert_frame_equal(result["frame"], sample_frame())
    assert type(result["arrays"]) is tuple
    np.testing.assert_array_equal(result["arrays"][1], np.ones(2, bool))


# --- kombu ------------------------------------------------------------------------


def test_kombu_serializer_roundtrips_numpy_array() -> None:
    register_kombu_serializer()
    register_kombu_serializer()  # idempotent
    array = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    content_type, encoding, payload = kombu.serialization.dumps({"result": array}, serializer=SERIALIZER_NAME)
    assert content_type == CONTENT_TYPE
    assert encoding == "utf-8"
    for data in (payload, payload.encode(encoding)):
        result = kombu.serialization.loads(data, content_type, encoding, accept=[CONTENT_TYPE, "application/json"])
        assert result["result"].dtype == np.float32
        np.testing.assert_array_equal(result["result"], array)


# --- plain JSON for HTTP ----------------------------------------------------------

PLAIN_CASES = {
    "int-array-2d": (np.arange(4).reshape(2, 2), [[0, 1], [2, 3]]),
    "float-array-nan-inf": (np.array([1.5, np.nan, -np.inf]), [1.5, None, None]),
    "datetime64-array": (
        np.array(["2024-01-01T00:00:00.5", "NaT"], dtype="M8[ns]"),
        ["2024-01-01T00:00:00.500000", None],
    ),
    "timedelta64-array": (np.array([90, 1], dtype="m8[s]"), [90.0, 1.0]),
    "np-int": (np.int64(7), 7),
    "np-float32": (np.float32(0.5), 0.5),
    "np-float-nan": (np.float64("nan"), None),
    "np-bool": (np.bool_(False), False),
    "np-str": (np.str_("x"), "x"),
    "np-datetime64": (np.datetime64("2024-01-02T03:04:05"), "2024-01-02T03:04:05"),
    "np-datetime64-nat": (np.datetime64("NaT"), None),
    "float-inf": (float("inf"), None),
    "datetime-utc": (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05+00:00"),
    "timestamp-tz-ns": (
        pd.Timestamp("2024-01-02 03:04:05.000000001", tz="Europe/Paris"),
        "2024-01-02T03:04:05.000000001+01:00",
    ),
    "date": (date(2024, 1, 2), "2024-01-02"),
    "time": (time(3, 4, 5), "03:04:05"),
    "timedelta": (timedelta(minutes=1, microseconds=500000), 60.5),
    "pd-timedelta": (pd.Timedelta("1.5s"), 1.5),
    "nat-na": ([pd.NaT, pd.NA], [None, None]),
    "decimal": (Decimal("1.25"), 1.25),
    "decimal-nan": (Decimal("NaN"), None),
    "uuid": (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    "objectid": (ObjectId("65a1b2c3d4e5f60718293a4b"), "65a1b2c3d4e5f60718293a4b"),
    "bytes-utf8": ("café".encode(), "café"),
    "bytes-binary": (b"\xff\xfe", "//4="),
    "set-tuple": ({"s": {1}, "t": (1, (2, 3))}, {"s": [1], "t": [1, [2, 3]]}),
    "dict-keys": (
        {1: "a", None: "b", 2.5: "c", date(2024, 1, 1): "d"},
        {"1": "a", "null": "b", "2.5": "c", "2024-01-01": "d"},
    ),
    "series": (pd.Series([1.0, np.nan], index=["a", "b"]), {"a": 1.0, "b": None}),
    "series-datetime-index": (pd.Series([5], index=pd.DatetimeIndex(["2024-01-01"])), {"2024-01-01T00:00:00": 5}),
    "index": (pd.Index([1, 2]), [1, 2]),
    "frame-default-index": (pd.DataFrame({"a": [1, 2], "b": ["x", None]}), [{"a": 1, "b": "x"}, {"a": 2, "b": None}]),
    "frame-named-index": (
        pd.DataFrame({"v": [0.5, np.nan]}, index=pd.date_range("2024-01-01", periods=2, name="day")),
        [{"day": "2024-01-01T00:00:00", "v": 0.5}, {"day": "2024-01-02T00:00:00", "v": None}],
    ),
    "frame-named-rangeindex": (pd.DataFrame({"v": [1]}).rename_axis("row"), [{"row": 0, "v": 1}]),
    "frame-unnamed-label-index": (
        pd.DataFrame({"v": [1, 2]}, index=["x", "y"]),
        [{"index": "x", "v": 1}, {"index": "y", "v": 2}],
    ),
}


@pytest.mark.parametrize(("value", "expected"), PLAIN_CASES.values(), ids=PLAIN_CASES.keys())
def test_to_plain(value: Any, expected: Any) -> None:
    result = to_plain(value)
    assert_same(result, expected)
    assert json.loads(dumps_plain(value)) == expected


def test_dumps_plain_is_strict_json() -> None:
    value = {
        "nan": float("nan"),
        "frame": pd.DataFrame({"x": [np.inf, 1.0]}),
        "array": np.array([np.nan]),
        "text": "héllo ✓",
        "pair": (1, 2),
    }
    text = dumps_plain(value)
    assert text == '{"nan":null,"frame":[{"x":null},{"x":1.0}],"array":[null],"text":"héllo ✓","pair":[1,2]}'

    def reject(token: str) -> None:
        raise AssertionError(f"non-standard token {token}")

    json.loads(text, parse_constant=reject)


def test_dumps_plain_of_plain_data_matches_json() -> None:
    events = [{"e": "a", "n": 1, "x": 0.25, "ok": None, "tags": ["t"]}]
    assert dumps_plain(events) == json.dumps(events, separators=(",", ":"))
    assert dumps_plain({1: "a"}) == '{"1":"a"}'


def test_text_with_a_lone_surrogate_still_travels_as_a_json_escape() -> None:
    value = {"name": "ada\ud800", "ok": "é"}
    text = dumps(value)
    text.encode("utf-8")  # a message or response body must be UTF-8: this used to raise (the task hung)
    assert loads(text) == value
    plain = dumps_plain(value)
    plain.encode("utf-8")
    assert json.loads(plain) == value
