"""Serialization: what goes into the log comes back equal, with its types."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from durable import serialization as ser
from durable.errors import NonDeterminismError, RecordedError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
any_values = st.recursive(
    json_values | st.binary() | st.sets(st.integers()) | st.tuples(st.integers(), st.text()),
    lambda children: st.lists(children) | st.dictionaries(st.integers(), children),
    max_leaves=20,
)


@given(json_values)
def test_plain_json_round_trips_as_json(value: object) -> None:
    encoding, payload = ser.encode(value)
    assert encoding == ser.JSON
    assert ser.decode(encoding, payload) == value


@given(any_values)
def test_any_picklable_value_round_trips_with_its_types(value: object) -> None:
    encoding, payload = ser.encode(value)
    back = ser.decode(encoding, payload)
    assert back == value
    assert type(back) is type(value)


@given(any_values)
def test_digests_are_stable_and_independent_of_set_order(value: object) -> None:
    assert ser.digest((value,), {}) == ser.digest((value,), {})


def test_sets_digest_the_same_whatever_their_iteration_order() -> None:
    assert ser.digest(({"b", "a", "c"},), {}) == ser.digest(({"c", "a", "b"},), {})


class Order(BaseModel):
    id: str
    cents: int
    placed: dt.datetime


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_pydantic_models_are_stored_as_json_and_rebuilt_from_the_annotation() -> None:
    order = Order(id="A-1", cents=4200, placed=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    encoding, payload = ser.encode(order, Order)
    assert encoding == ser.PYDANTIC
    assert '"cents":4200' in payload  # readable in the log
    assert ser.decode(encoding, payload, Order) == order


def test_dataclasses_and_tuples_use_their_annotation() -> None:
    assert ser.decode(*ser.encode(Point(1, 2), Point), Point) == Point(1, 2)
    encoding, payload = ser.encode((1, "a"), tuple[int, str])
    assert encoding == ser.PYDANTIC
    assert ser.decode(encoding, payload, tuple[int, str]) == (1, "a")


def test_a_wrong_annotation_falls_back_to_pickle() -> None:
    encoding, payload = ser.encode(Point(1, 2), int)
    assert encoding == ser.PICKLE
    assert ser.decode(encoding, payload) == Point(1, 2)


def test_an_unpicklable_value_is_a_clear_error() -> None:
    import threading

    with pytest.raises(ser.Unserializable, match="lock"):
        ser.encode(threading.Lock())


class NeedsTwoArguments(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def test_an_exception_whose_init_takes_other_arguments_comes_back_as_itself() -> None:
    try:
        raise NeedsTwoArguments(1, 2)
    except NeedsTwoArguments as error:
        payload = ser.encode_error(error)
    back = ser.decode_error(payload)
    assert type(back) is NeedsTwoArguments
    assert str(back) == "1/2"
    assert "raise NeedsTwoArguments(1, 2)" in json.loads(payload)["traceback"]


# Written by encode_error before it recorded the class (commit 5f54ecd).
OLD_KEY_ERROR = (
    '{"type": "builtins.KeyError", "message": "\'missing\'", "traceback": "Traceback (most '
    'recent call last):\\n  File \\"<string>\\", line 6, in <module>\\nKeyError: '
    '\'missing\'\\n", "pickle": "gAWVJwAAAAAAAACMCGJ1aWx0aW5zlIwIS2V5RXJyb3KUk5SMB21pc3Npbm'
    'eUhZRSlC4="}'
)
OLD_UNPICKLABLE = (
    '{"type": "__main__.NeedsTwo", "message": "1/2", "traceback": "Traceback (most recent '
    'call last):\\n  File \\"<string>\\", line 10, in <module>\\nNeedsTwo: 1/2\\n", '
    '"pickle": null}'
)


def test_errors_recorded_by_older_versions_still_read_back() -> None:
    back = ser.decode_error(OLD_KEY_ERROR)
    assert type(back) is KeyError
    assert back.args == ("missing",)
    stand_in = ser.decode_error(OLD_UNPICKLABLE)
    assert isinstance(stand_in, RecordedError)
    assert stand_in.type_name == "__main__.NeedsTwo"
    assert stand_in.message == "1/2"
    assert "NeedsTwo: 1/2" in stand_in.traceback_text


def test_ordinary_exceptions_come_back_as_themselves() -> None:
    back = ser.decode_error(ser.encode_error(KeyError("missing")))
    assert isinstance(back, KeyError)
    assert back.args == ("missing",)


def test_durable_errors_pickle_whatever_their_signature() -> None:
    error = NonDeterminismError("wf", 3, "step a()", "step b()", "x.py:1", "reordered")
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == str(error)
    assert back.call == 3


@given(json_values)
def test_the_fast_json_reader_reads_what_encode_wrote(value: object) -> None:
    _, payload = ser.encode(value)
    assert ser.loads(payload) == value


@pytest.mark.parametrize("text", [" 1", "1 ", "[1] x", "", "nul", '"open'])
def test_the_fast_json_reader_leaves_unusual_text_to_json(text: str) -> None:
    try:
        expected: object = json.loads(text)
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            ser.loads(text)
    else:
        assert ser.loads(text) == expected
