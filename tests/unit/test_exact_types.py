"""Values come back from the log with exactly their types, and encode_checked hands the
live run the value a replay will see."""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
import math
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from durable import serialization as ser


class Pair(NamedTuple):
    x: int
    y: int


class Color(str, enum.Enum):  # noqa: UP042 (the classic str-Enum)
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1


class Cents(int):
    pass


class Box(BaseModel):
    content: Any


@dataclasses.dataclass
class Line:
    points: list[Any]


@pytest.mark.parametrize(("value", "annotation"), [
    (Pair(1, 2), tuple[int, int]),
    (Color.RED, str),
    (Level.LOW, int),
    (Cents(5), int),
    (collections.defaultdict(int, {"a": 1}), dict[str, int]),
    (collections.OrderedDict(a=1), dict[str, int]),
    ([(1, 2)], list[Any]),
    ([(1, 2)], list),  # type: ignore[list-item]
    ({"k": (1, 2)}, dict[str, Any]),
    (Box(content=(1, 2)), Box),
    (Box(content=collections.defaultdict(list)), Box),
    (Line([Pair(1, 2)]), Line),
    ((1, True), tuple[int, int]),
    (frozenset({1}), set[int]),
])
def test_a_value_whose_type_does_not_survive_pydantic_is_pickled(value: Any,
                                                                  annotation: Any) -> None:
    encoding, payload, decoded = ser.encode_checked(value, annotation)
    assert encoding == ser.PICKLE
    back = ser.decode(encoding, payload, annotation)
    assert back == value
    assert ser.same_types(back, value)
    assert ser.same_types(decoded, value)


@pytest.mark.parametrize(("value", "annotation"), [
    ((1, "a"), tuple[int, str]),
    (Box(content=[1, 2]), Box),
    (Line([1, "a"]), Line),
    ({1, 2}, set[int]),
])
def test_a_value_whose_types_survive_pydantic_stays_readable_json(value: Any,
                                                                  annotation: Any) -> None:
    encoding, _, decoded = ser.encode_checked(value, annotation)
    assert encoding == ser.PYDANTIC
    assert decoded == value
    assert ser.same_types(decoded, value)


scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=5)
           | st.floats(allow_nan=False) | st.binary(max_size=5)
           | st.sampled_from([Color.RED, Level.LOW, Cents(3)]))
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner)
                         | st.frozensets(inner, max_size=3), max_leaves=6)
values = st.recursive(
    scalars | hashables,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=3), children, max_size=4)
    | st.dictionaries(hashables, children, max_size=3)
    | st.tuples(children, children)
    | st.builds(Pair, children, children)
    | st.builds(lambda d: collections.defaultdict(list, d),
                st.dictionaries(st.text(max_size=3), children, max_size=3))
    | st.builds(Box, content=children)
    | st.builds(Line, st.lists(children, max_size=3)),
    max_leaves=15,
)
annotations = st.sampled_from([None, Any, list[Any], dict[str, Any], tuple[Any, Any], Box,
                               Line, str, int, float, set[int]])


@given(values, annotations)
def test_every_value_round_trips_equal_and_with_exactly_its_types(value: Any,
                                                                  annotation: Any) -> None:
    encoding, payload, decoded = ser.encode_checked(value, annotation)
    back = ser.decode(encoding, payload, annotation)
    assert back == value
    assert ser.same_types(back, value)
    assert decoded == value
    assert ser.same_types(decoded, value)
    assert ser.same_value(back, value)
    assert ser.encode(value, annotation) == (encoding, payload)


def test_the_live_run_gets_a_copy_that_a_step_cannot_change_behind_its_back() -> None:
    cart = ["book"]
    _, _, decoded = ser.encode_checked(cart)
    cart.append("fee")  # the step kept a reference and changed it after returning
    assert decoded == ["book"]
    box = Box(content=["book"])
    _, _, decoded_box = ser.encode_checked(box, Box)
    box.content.append("fee")
    assert decoded_box.content == ["book"]
    pair = {"a": object()}
    _, _, decoded_pair = ser.encode_checked(pair)
    assert decoded_pair is not pair


def test_ints_and_strs_are_handed_back_as_they_are() -> None:
    text = "x" * 100
    big = 10**30
    assert ser.encode_checked(text)[2] is text
    assert ser.encode_checked(big)[2] is big
    assert ser.encode_checked(text) == (ser.JSON, '"' + text + '"', text)


class Unreadable:
    """Pickles (by default reduce) but __init__ needs arguments unpickling cannot give."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unreadable, (1, 2))

    def __init__(self) -> None:
        self.x = 1


def test_a_pickle_that_cannot_be_read_back_is_refused_when_recorded() -> None:
    with pytest.raises(ser.Unserializable) as caught:
        ser.encode_checked(Unreadable())
    assert caught.value.type_name.endswith("test_exact_types.Unreadable")
    message = str(caught.value)
    assert "cannot be unpickled" in message
    assert "__reduce__" in message  # says what to do


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def test_too_deep_nesting_is_a_clear_error_on_record_and_on_read() -> None:
    with pytest.raises(ser.Unserializable, match="nested too deeply") as caught:
        ser.encode_checked(_deep(100_000))
    assert caught.value.type_name == "builtins.list"
    with pytest.raises(ser.Unserializable, match="nested too deeply"):
        ser.decode(ser.JSON, "[" * 100_000 + "]" * 100_000)


def test_huge_ints_are_pickled_rather_than_failing() -> None:
    big = 10**5000
    encoding, _, decoded = ser.encode_checked(big)
    assert encoding == ser.PICKLE
    assert decoded == big
    assert ser.decode(*ser.encode([big])) == [big]


class Plain:
    def __init__(self, n: int) -> None:
        self.n = n


def test_same_value_compares_exact_types_and_contents() -> None:
    assert ser.same_value([1, {"a": (1, 2)}], [1, {"a": (1, 2)}])
    assert not ser.same_value(1, True)
    assert not ser.same_value([1], [1.0])
    assert not ser.same_value(Pair(1, 2), (1, 2))
    assert not ser.same_value(Color.RED, "red")
    assert not ser.same_value({"a": 1}, collections.defaultdict(int, a=1))
    assert not ser.same_value([1], [2])
    assert ser.same_value([math.nan], [math.nan])  # equal by their encoding
    assert ser.same_value(Plain(1), Plain(1))  # no __eq__: equal by their pickle
    assert not ser.same_value(Plain(1), Plain(2))
    assert not ser.same_value({1, True and 2}, {1, 2.0})


@given(st.floats() | st.booleans() | st.none() | st.integers() | st.text())
def test_scalars_are_written_as_json_writes_them(value: Any) -> None:
    encoding, payload, decoded = ser.encode_checked(value)
    assert (encoding, payload) == (ser.JSON, json.dumps(value))
    assert decoded is value
