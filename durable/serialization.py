"""How values go into the event log and come back out.

A payload is stored with its encoding:

- ``json``: the value is plain JSON data (dict with str keys, list, str, int, float,
  bool, None) and comes back equal and of the same types.
- ``pydantic``: JSON written by pydantic from the function's annotation (models,
  dataclasses, tuples, datetimes...) and rebuilt from the same annotation.
- ``pickle``: anything else, through cloudpickle (a BLOB; the rest of the log stays
  readable with ``sqlite3``).
- ``error``: an exception, as JSON with its type name, message and traceback text,
  plus a pickle of it when that pickle can be read back.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import traceback
from typing import Any

import cloudpickle

from durable.errors import RecordedError

JSON, PYDANTIC, PICKLE, ERROR = "json", "pydantic", "pickle", "error"

#: Payloads larger than this are logged with a warning: huge rows slow every replay.
LARGE_PAYLOAD = 1 << 20

_PLAIN_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_PLAIN_SCALARS)
# json.dumps(separators=...) builds a new encoder on every call: build one once.
_compact = json.JSONEncoder(separators=(",", ":")).encode
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
# json.loads wraps the C scanner in three Python calls and two regex matches; replay
# decodes one payload per call, so it calls the scanner directly (see loads).
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


class Unserializable(Exception):
    """Raised by :func:`encode` when no encoding can write the value."""

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name, self.reason = type_name, reason
        super().__init__(f"{type_name}: {reason}")


def is_plain_json(value: Any) -> bool:
    """True when JSON brings ``value`` back equal and with the same Python types."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is list:
        return all(is_plain_json(item) for item in value)
    if kind is dict:
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    return False


def _usable_annotation(annotation: Any) -> bool:
    return annotation not in (None, Any, object) and annotation is not _EMPTY


_EMPTY: Any = object()


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter  # imported late: pydantic costs ~80 ms at start-up

    return TypeAdapter(annotation)


def _encode_pydantic(value: Any, annotation: Any) -> str | None:
    """JSON written by pydantic, or None when the annotation does not describe the value."""
    try:
        adapter = _adapter(annotation)
        data = adapter.dump_json(value, warnings="error")
        if adapter.validate_json(data) != value:
            return None
        return str(data.decode())
    except Exception:  # pydantic raises many types here; every one means "not this way"
        return None


def encode(value: Any, annotation: Any = None) -> tuple[str, str | bytes]:
    """Encode ``value`` for the log, as ``(encoding, payload)``.

    Raises:
        Unserializable: when neither JSON, pydantic nor cloudpickle can write it.
    """
    kind = type(value)
    if kind is int:
        return JSON, int.__repr__(value)  # what JSON writes, without the encoder's overhead
    if kind is str:
        return JSON, _quote(value)
    if is_plain_json(value):
        return JSON, _compact(value)
    if _usable_annotation(annotation):
        text = _encode_pydantic(value, annotation)
        if text is not None:
            return PYDANTIC, text
    try:
        return PICKLE, cloudpickle.dumps(value)
    except Exception as error:
        raise Unserializable(_type_name(value), f"{type(error).__name__}: {error}") from error


def loads(text: str | bytes) -> Any:
    """``json.loads`` of a payload we wrote (compact: no surrounding whitespace), faster."""
    if type(text) is str:
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            end = -1
        if end == len(text):
            return value
    return json.loads(text)  # anything unusual, with json's own errors


def decode(encoding: str, payload: str | bytes | None, annotation: Any = None) -> Any:
    """Rebuild a value written by :func:`encode` (or an exception, for ``error``)."""
    if encoding == JSON:
        return loads(payload) if payload is not None else None
    if encoding == PICKLE:
        assert isinstance(payload, bytes)
        return cloudpickle.loads(payload)
    if encoding == PYDANTIC:
        return _adapter(annotation).validate_json(payload)
    if encoding == ERROR:
        assert isinstance(payload, str)
        return decode_error(payload)
    raise ValueError(f"unknown payload encoding {encoding!r}")


def encode_error(error: BaseException) -> str:
    """An exception as JSON: type, message, traceback text and a pickle that reads back."""
    pickled: str | None = None
    try:
        data = cloudpickle.dumps(error)
        cloudpickle.loads(data)  # custom __init__ signatures pickle but fail to unpickle
        pickled = base64.b64encode(data).decode()
    except Exception:
        pickled = None
    return json.dumps(
        {
            "type": _type_name(error),
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
            "pickle": pickled,
        }
    )


def decode_error(payload: str) -> BaseException:
    """The recorded exception itself, or a :class:`RecordedError` that stands in for it."""
    record = json.loads(payload)
    if record.get("pickle"):
        try:
            error = cloudpickle.loads(base64.b64decode(record["pickle"]))
            if isinstance(error, BaseException):
                return error
        except Exception:
            pass  # fall through to the stand-in, which keeps type, message and traceback
    return RecordedError(record["type"], record["message"], record.get("traceback", ""))


def error_summary(payload: str) -> str:
    """``Type: message`` of a recorded error, for tables and messages."""
    record = json.loads(payload)
    return f"{record['type']}: {record['message']}"


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` that is the same in every process, for digests."""
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, dict):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"dict": items}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, set | frozenset):
        return {"set": sorted(json.dumps(_canonical(item)) for item in value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_type_name(value): _canonical(dataclasses.asdict(value))}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return {_type_name(value): _canonical(dump())}
    text = repr(value)
    # Default reprs hold memory addresses, which differ on every run.
    return {_type_name(value): None if " at 0x" in text else text}


ARGS_TEXT_LIMIT = 200
_SHORT_DIGEST = 16


def digest_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
    """A digest of call arguments that is stable across processes, and the text it was
    made from (cut to ARGS_TEXT_LIMIT characters), which the log keeps to be read."""
    scalars = (type(args[0]) in _SCALAR_TYPES if len(args) == 1  # the common case, fast
               else _SCALAR_TYPES.issuperset(map(type, args)))
    if scalars and not kwargs:
        text = repr(args)  # scalars only: repr is exact, stable and cheaper than JSON
    else:
        try:
            text = _compact([args, kwargs])
        except (TypeError, ValueError):
            text = _compact(_canonical([args, kwargs]))
    # Short texts are their own digest: exact, and no hashing on every replayed call.
    if len(text) <= _SHORT_DIGEST:
        return text, text
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    if len(text) > ARGS_TEXT_LIMIT:
        text = text[: ARGS_TEXT_LIMIT - 3] + "..."
    return digest, text


def digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short digest of call arguments that is stable across processes."""
    return digest_text(args, kwargs)[0]
