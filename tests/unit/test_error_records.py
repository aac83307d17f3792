"""A recorded exception is raised again on replay with its own class, without running
its __init__, and with its args, attributes and message."""

from __future__ import annotations

import base64
import errno
import json
import pickle
import threading
from typing import Any

import pytest

from durable import serialization as ser
from durable.errors import NonDeterminismError, RecordedError, SerializationError

INIT_CALLS: list[tuple[Any, ...]] = []


class PaymentDeclined(Exception):
    def __init__(self, order: str, cents: int) -> None:
        INIT_CALLS.append((order, cents))
        self.order, self.cents = order, cents
        super().__init__(f"payment for {order} of {cents} cents was declined")


class CustomText(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)

    def __str__(self) -> str:
        return f"code {self.code}"


def replayed(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as raised:
        payload = ser.encode_error(raised)
    json.loads(payload)  # stays readable JSON
    return ser.decode_error(payload)


def test_an_exception_comes_back_with_its_class_args_and_attributes() -> None:
    INIT_CALLS.clear()
    error = PaymentDeclined("A-17", 4200)
    back = replayed(error)
    assert INIT_CALLS == [("A-17", 4200)]  # only the live one: replay did not call __init__
    with pytest.raises(PaymentDeclined) as caught:
        raise back
    assert caught.value.order == "A-17"
    assert caught.value.cents == 4200
    assert caught.value.args == error.args
    assert str(caught.value) == str(error)


def test_a_custom_str_still_gives_the_original_message() -> None:
    back = replayed(CustomText(7))
    assert type(back) is CustomText
    assert str(back) == "code 7"


def test_an_attribute_that_cannot_be_pickled_is_dropped_not_fatal() -> None:
    error = PaymentDeclined("A-1", 1)
    error.lock = threading.Lock()  # type: ignore[attr-defined]
    error.add_note("while charging")
    back = replayed(error)
    assert type(back) is PaymentDeclined
    assert not hasattr(back, "lock")
    assert back.__notes__ == ["while charging"]
    assert back.order == "A-1"  # type: ignore[attr-defined]


def test_an_unpicklable_arg_is_kept_as_its_text() -> None:
    lock = threading.Lock()
    back = replayed(ValueError(lock))
    assert type(back) is ValueError
    assert back.args == (str(lock),)


def test_builtin_and_durable_errors_keep_their_fields() -> None:
    os_error = replayed(FileNotFoundError(errno.ENOENT, "No such file", "/x"))
    assert type(os_error) is FileNotFoundError
    assert os_error.errno == errno.ENOENT
    assert os_error.filename == "/x"
    key_error = replayed(KeyError("missing"))
    assert type(key_error) is KeyError
    assert key_error.args == ("missing",)
    diverged = replayed(NonDeterminismError("wf", 3, "a()", "b()", "x.py:1", "a change"))
    assert type(diverged) is NonDeterminismError
    assert diverged.call == 3
    failed = replayed(SerializationError("wf", 2, "result", "x.Y", "no"))
    assert type(failed) is SerializationError
    assert failed.type_name == "x.Y"


def test_a_class_defined_in_a_function_comes_back_too() -> None:
    class Local(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a + b)

    back = replayed(Local(1, 2))
    assert type(back) is Local  # cloudpickle keeps the class, by value
    assert back.args == (3,)


def test_a_class_that_cannot_be_loaded_gives_a_recorded_error() -> None:
    record = json.loads(ser.encode_error(PaymentDeclined("A-2", 5)))
    # What a class from a module that no longer exists pickles to.
    record["class"] = base64.b64encode(b"cgone_module\nGone\n.").decode()
    record["pickle"] = None
    back = ser.decode_error(json.dumps(record))
    assert isinstance(back, RecordedError)
    assert back.type_name.endswith("PaymentDeclined")
    assert back.message == "payment for A-2 of 5 cents was declined"
    assert "PaymentDeclined" in back.traceback_text


def test_unserializable_pickles_and_names_the_type_and_the_fix() -> None:
    error = ser.Unserializable("x.Client", "it cannot be pickled (TypeError: no)")
    back = pickle.loads(pickle.dumps(error))
    assert back.type_name == "x.Client"
    assert str(back) == str(error)
    assert "x.Client" in str(error)
    assert "pydantic model" in str(error)  # what to do
