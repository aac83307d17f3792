"""How an exception goes into the event log and is raised again on replay.

A recorded exception is JSON: its type name, message and traceback text (readable with
``sqlite3``), its class, args and ``__dict__`` pickled part by part, and, when that is
safe, a pickle of the whole exception. Replay raises it again with its own class
(``except PaymentDeclined:`` still matches) without calling its ``__init__``; only a
class that can no longer be loaded gives a :class:`durable.errors.RecordedError`.
"""

from __future__ import annotations

import base64
import json
import traceback
import types
from typing import Any

import cloudpickle

from durable.errors import RecordedError


def encode_error(error: BaseException) -> str:
    """An exception as JSON: type, message, traceback text, and what rebuilds it.

    ``class``, ``args`` and ``state`` (its ``__dict__``) are pickled part by part, each
    part checked to unpickle and dropped if it does not, so that replay raises the same
    class again without calling its ``__init__``. ``pickle`` holds the whole exception
    when unpickling it is safe (its class has no ``__init__`` of its own written in
    Python, or its own ``__reduce__``) and brings it back as itself.
    """
    kind = type(error)
    record: dict[str, Any] = {
        "type": _type_name(error),
        "message": _text(error),
        "traceback": "".join(traceback.format_exception(error)),
        "pickle": None,
    }
    python_init = isinstance(kind.__init__, types.FunctionType)
    if kind.__reduce__ is not BaseException.__reduce__ or not python_init:
        whole = _checked_pickle(error)
        if whole is not None:
            back = cloudpickle.loads(base64.b64decode(whole))
            if type(back) is kind and _text(back) == record["message"]:
                record["pickle"] = whole
    record["class"] = _checked_pickle(kind)
    record["args"] = [_checked_pickle(arg) for arg in error.args]
    record["arg_texts"] = [None if part else _text(arg)
                           for part, arg in zip(record["args"], error.args, strict=True)]
    state = {name: _checked_pickle(value) for name, value in vars(error).items()}
    record["state"] = {name: part for name, part in state.items() if part is not None}
    return json.dumps(record)


def decode_error(payload: str) -> BaseException:
    """The recorded exception, of its own class; a :class:`RecordedError` that keeps its
    type name, message and traceback text when that class cannot be loaded."""
    record = json.loads(payload)
    if record.get("pickle"):  # also how logs written before ``class`` was kept read back
        try:
            error = cloudpickle.loads(base64.b64decode(record["pickle"]))
            if isinstance(error, BaseException):
                return error
        except Exception:
            pass  # try the parts, then the stand-in
    rebuilt = _rebuild_error(record)
    if rebuilt is not None:
        return rebuilt
    return RecordedError(record["type"], record["message"], record.get("traceback", ""))


def _rebuild_error(record: dict[str, Any]) -> BaseException | None:
    """``cls.__new__(cls)`` with the recorded args and state: no ``__init__`` runs."""
    if not record.get("class"):
        return None
    try:
        cls = cloudpickle.loads(base64.b64decode(record["class"]))
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            return None
        error = cls.__new__(cls)
        texts = record.get("arg_texts") or [None] * len(record["args"])
        error.args = tuple(_unpickle(part) if part else text
                           for part, text in zip(record["args"], texts, strict=True))
        error.__dict__.update({name: _unpickle(part) for name, part in record["state"].items()})
        return error
    except Exception:
        return None  # the class is gone or will not build: the caller uses the stand-in


def _checked_pickle(value: Any) -> str | None:
    """Base64 cloudpickle of ``value`` when it also unpickles, else None."""
    try:
        data = cloudpickle.dumps(value)
        cloudpickle.loads(data)
    except Exception:  # RecursionError included: a part we cannot keep is dropped
        return None
    return base64.b64encode(data).decode()


def _unpickle(part: str) -> Any:
    return cloudpickle.loads(base64.b64decode(part))


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception as error:  # a __str__ that fails must not hide the real error
        return f"<str() failed: {type(error).__name__}: {error}>"


def error_summary(payload: str) -> str:
    """``Type: message`` of a recorded error, for tables and messages."""
    record = json.loads(payload)
    return f"{record['type']}: {record['message']}"




def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
