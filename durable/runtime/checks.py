"""Checks of what callers hand to durable: names and ids, and the payloads other
processes will read (signals, published events)."""

from __future__ import annotations

from typing import Any

from durable import serialization as ser
from durable.errors import InvalidArgument, PickleRefused, SerializationError


def check_text(value: Any, what: str) -> str:
    """``value`` if it is a non-empty str the database can store, else InvalidArgument.

    ``what`` names the argument and its call, e.g. ``"send_signal(..., name=...)"``.
    """
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            f"{what}: must be a str and not empty, not {type(value).__name__} ({value!r}); "
            "names, keys and ids are text, such as \"approved\"")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidArgument(
            f"{what}: {value!r} is not valid text (a lone surrogate at index {error.start}, "
            "e.g. from undecodable bytes in a file name); pass text that encodes as UTF-8"
        ) from None
    return value


def encode_message(value: Any, allow_pickle: bool, workflow_id: str, call: int,
                   what: str) -> tuple[str, str | bytes]:
    """Encode a payload that another process reads (a signal, a published event).

    JSON by default: plain JSON data, and pydantic models and dataclasses as their JSON
    (the reader gets a dict). A value that needs pickle is refused unless the sender
    passes ``allow_pickle=True``: unpickling runs code chosen by whoever wrote the bytes.
    """
    if not allow_pickle and not ser.is_plain_json(value):
        text = _pydantic_json(value)
        if text is None:
            raise PickleRefused(workflow_id, call, what,
                                f"{type(value).__module__}.{type(value).__qualname__}")
        return ser.JSON, text
    try:
        return ser.encode(value)
    except ser.Unserializable as error:
        raise SerializationError(workflow_id, call, what, error.type_name,
                                 error.reason) from error


def _pydantic_json(value: Any) -> str | None:
    """A pydantic model or dataclass as JSON text; None for anything else."""
    import dataclasses

    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        from pydantic import TypeAdapter

        try:
            return TypeAdapter(type(value)).dump_json(value).decode()
        except Exception:  # pydantic raises many types here; each means "not as JSON"
            return None
    return None
