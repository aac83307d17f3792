"""The argument digest: stable across processes, complete, and unchanged for old logs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, RootModel

from durable import serialization as ser


@dataclasses.dataclass
class Inner:
    z: int
    a: str


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    items: list[Inner]
    tags: dict[str, int]


class Model(BaseModel):
    zeta: int
    alpha: Inner
    extra: dict[str, int]
    placed: dt.datetime


Numbers = RootModel[list[int]]


class Color(str, enum.Enum):  # noqa: UP042 (the classic str-Enum)
    RED = "red"


class Priority(enum.Enum):
    HIGH = 1


UTC = dt.UTC


def old_cases() -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Arguments whose digests the logs written before 0.2 hold (see PINNED)."""
    when = dt.datetime(2026, 1, 1, tzinfo=UTC)
    return [
        ((), {}),
        ((1,), {}),
        (("A-17",), {}),
        (("A-17", 4200), {}),
        ((1.5, None, True), {}),
        (("a" * 40,), {}),
        (([1, 2, 3],), {}),
        (({"a": 1, "b": [1, 2]},), {}),
        (("order-1",), {"cents": 4200, "currency": "EUR"}),
        (([{"id": "x", "qty": 2}, {"id": "y", "qty": 1}], "note"), {}),
        ((("t", 1),), {}),
        (({1, 2, 3},), {}),
        ((when,), {}),
        ((decimal.Decimal("1.10"),), {}),
        ((b"bytes",), {}),
        ((uuid.UUID(int=5),), {}),
        ((Outer("n", Inner(1, "x"), [Inner(2, "y")], {"a": 2, "b": 1}),), {}),
        ((Model(zeta=1, alpha=Inner(3, "q"), extra={"k": 1}, placed=when),), {}),
        ((Color.RED,), {}),
        ((Priority.HIGH,), {}),
        ((dt.date(2026, 1, 2), dt.timedelta(seconds=5)), {"when": None}),
        ((("x", {"k": b"v"}),), {"opt": (1, 2)}),
        ((Inner,), {}),
        ((Numbers([2, 1]),), {}),
    ]


# Computed with durable/serialization.py as it was before digests sorted dicts and
# pickled undescribed objects (commit 5f54ecd): old logs must keep matching.
PINNED = [
    '()',
    '(1,)',
    "('A-17',)",
    "('A-17', 4200)",
    '07234bc8c9ef4952',
    '7d1becc82c4485d6',
    '[[[1,2,3]],{}]',
    'bffb262839d7a637',
    '0d865612ae8447be',
    'fde47aa433a3f316',
    '[[["t",1]],{}]',
    '6e8be8778d85530f',
    '35ca22d955081ce6',
    'cdb1ec1f5e6da2b6',
    '682dd3ce1765288b',
    'a863994497c43f97',
    '781375e3ae396b97',
    'fe478fac2866cefe',
    '[["red"],{}]',
    '57c4fc6ef965efed',
    '07aa3fe420eb4b1e',
    'be6f0710d5e2b079',
    '08f6cb87d4230a7d',
    'e1bd2342f0913388',
]


def test_digests_of_common_arguments_did_not_change() -> None:
    got = [ser.digest(args, kwargs) for args, kwargs in old_cases()]
    assert got == PINNED


def test_dict_order_does_not_change_the_digest() -> None:
    assert ser.digest(({"b": 1, "a": 2},), {}) == ser.digest(({"a": 2, "b": 1},), {})
    assert ser.digest((), {"y": 1, "x": 2}) == ser.digest((), {"x": 2, "y": 1})
    # dicts that the fast JSON path cannot write (a set inside, mixed key types)
    assert (ser.digest(({"b": {1}, "a": 2},), {})
            == ser.digest(({"a": 2, "b": {1}},), {}))
    assert ser.digest(({1: "x", "a": 2},), {}) == ser.digest(({"a": 2, 1: "x"},), {})


def test_dicts_inside_models_and_dataclasses_are_sorted_but_fields_keep_their_order() -> None:
    a = Outer("n", Inner(1, "x"), [], {"b": 1, "a": 2})
    b = Outer("n", Inner(1, "x"), [], {"a": 2, "b": 1})
    assert ser.digest((a,), {}) == ser.digest((b,), {})
    _, text = ser.digest_text((Inner(1, "x"),), {})
    assert text.index('"z"') < text.index('"a"')  # field order, as before


dict_items = st.dictionaries(st.text(max_size=5) | st.integers(), st.integers() | st.text(),
                             max_size=8)


@given(dict_items, st.randoms(use_true_random=False))
def test_any_reordering_of_a_dict_digests_the_same(items: dict[Any, Any], rnd: Any) -> None:
    pairs = list(items.items())
    rnd.shuffle(pairs)
    assert ser.digest((dict(pairs),), {}) == ser.digest((items,), {})
    assert ser.digest((dict(pairs), {0}), {}) == ser.digest((items, {0}), {})


class Order:  # a plain class: its repr holds an address
    def __init__(self, cents: int) -> None:
        self.cents = cents
        self.tags = {"b", "a", "c"}


class Slotted:  # no __dict__: its state is in slots
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


def adder(n: int) -> Any:
    return lambda x: x + n


def test_objects_are_never_digested_as_their_type_name_alone() -> None:
    assert ser.digest((Order(100),), {}) != ser.digest((Order(999),), {})
    assert ser.digest((Order(100),), {}) == ser.digest((Order(100),), {})
    assert ser.digest((Slotted(1),), {}) != ser.digest((Slotted(2),), {})
    one, two = (lambda: 1), (lambda: 2)
    assert ser.digest((one,), {}) == ser.digest((one,), {})
    assert ser.digest((one,), {}) != ser.digest((two,), {})
    assert ser.digest((adder(1),), {}) != ser.digest((adder(2),), {})
    _, text = ser.digest_text((Order(100),), {})
    assert "100" in text


def test_a_self_referencing_argument_is_digested_by_its_pickle() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [2]
    b.append(b)
    assert ser.digest((a,), {}) != ser.digest((b,), {})
    one, two = Order(1), Order(2)
    one.me, two.me = one, two  # type: ignore[attr-defined]
    assert ser.digest((one,), {}) != ser.digest((two,), {})


def test_an_argument_that_can_be_neither_described_nor_pickled_is_a_clear_error() -> None:
    holder = Order(1)
    holder.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(ser.Unserializable) as caught:
        ser.digest(("x",), {"order": holder})
    assert caught.value.type_name.endswith("test_digest.Order")
    assert "argument order=" in str(caught.value)
    assert "pickle" in str(caught.value)


_PROGRAM = """
import sys
sys.path.insert(0, {root!r})
from durable import serialization as ser
from tests.unit.test_digest import Order, Inner, Outer
names = {{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}}
cases = [
    ({{name: len(name) for name in names}},),
    (names, frozenset(names)),
    ({{name: {{1}} for name in names}},),
    (Order(5),),
    (Outer("n", Inner(1, "x"), [], {{name: 1 for name in names}}),),
    ((lambda v: v in {{"p", "q", "r"}} or v in names),),
]
print([ser.digest(args, {{"kw": sorted(names)}}) for args in cases])
"""


def test_digests_do_not_depend_on_pythonhashseed() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    program = _PROGRAM.format(root=root)
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs


def test_huge_ints_are_digested_and_too_deep_nesting_is_a_clear_error() -> None:
    big = 10**5000
    assert ser.digest((big,), {}) != ser.digest((big + 1,), {})
    deep: Any = []
    for _ in range(5000):  # too deep for the canonical walk and for pickle
        deep = [deep]
    with pytest.raises(ser.Unserializable, match="argument 1"):
        ser.digest((deep, {2}), {})
