"""How values go into the event log and come back out.

A payload is stored with its encoding:

- ``json``: the value is plain JSON data (dict with str keys, list, str, int, float,
  bool, None) and comes back equal and of the same types.
- ``pydantic``: JSON written by pydantic from the function's annotation (models,
  dataclasses, tuples, datetimes...) and rebuilt from the same annotation; used only
  when the rebuilt value is equal AND of the same types all the way down.
- ``pickle``: anything else, through cloudpickle (a BLOB; the rest of the log stays
  readable with ``sqlite3``), checked to unpickle when it is written.
- ``error``: an exception, as JSON with its type name, message and traceback text,
  plus what is needed to raise it again with its own class on replay
  (:mod:`durable.error_records`; its functions are importable from here too).

:func:`encode_checked` also returns the value as :func:`decode` will rebuild it, so
that a live run can go on with exactly what a replay will see.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
from typing import Any

import cloudpickle

from durable.error_records import decode_error as decode_error
from durable.error_records import encode_error as encode_error  # the public names live here
from durable.error_records import error_summary as error_summary

JSON, PYDANTIC, PICKLE, ERROR = "json", "pydantic", "pickle", "error"

#: Payloads larger than this are logged with a warning: huge rows slow every replay.
LARGE_PAYLOAD = 1 << 20

_PLAIN_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_PLAIN_SCALARS)
# json.dumps(separators=...) builds a new encoder on every call: build one once.
_compact = json.JSONEncoder(separators=(",", ":")).encode
# The digest sorts dict keys so that it does not depend on insertion order; a dict
# whose keys are already sorted gets the same text as before keys were sorted.
_compact_sorted = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
# json.loads wraps the C scanner in three Python calls and two regex matches; replay
# decodes one payload per call, so it calls the scanner directly (see loads).
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]

_ADVICE = (
    "Return (or pass) JSON data, a pydantic model or dataclass with a matching "
    "annotation, or an object that pickles and unpickles (cloudpickle)"
)
_TOO_DEEP = "it is nested too deeply to be written and read back (RecursionError)"


class Unserializable(Exception):
    """A value cannot be written to the log, or what was written cannot be read back.

    ``type_name`` is the value's ``module.qualname`` and ``reason`` the specific cause;
    the runtime turns it into :class:`durable.errors.SerializationError`.
    """

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name, self.reason = type_name, reason
        super().__init__(f"a value of type {type_name} cannot go through the event log: "
                         f"{reason}. {_ADVICE}.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unserializable, (self.type_name, self.reason))


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


def same_types(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` have exactly the same types all the way down.

    Containers are compared item by item (dicts in order, sets by equal members),
    dataclasses by field and other objects by their ``__dict__``. Values are not
    compared: use it next to ``==``.
    """
    kind = type(a)
    if kind is not type(b):
        return False
    if kind in _SCALAR_TYPES:
        return True
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same_types, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same_types(ka, kb) and same_types(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        members = {item: item for item in b}
        return len(a) == len(b) and all(
            item in members and same_types(item, members[item]) for item in a
        )
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(same_types(getattr(a, f.name, None), getattr(b, f.name, None))
                   for f in dataclasses.fields(a))
    state = getattr(a, "__dict__", None)
    if type(state) is dict and not isinstance(a, type | types.ModuleType):
        return same_types(state, getattr(b, "__dict__", None))
    return True


def _usable_annotation(annotation: Any) -> bool:
    return annotation not in (None, Any, object) and annotation is not _EMPTY


_EMPTY: Any = object()


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> Any:
    from pydantic import TypeAdapter  # imported late: pydantic costs ~80 ms at start-up

    return TypeAdapter(annotation)


def _encode_pydantic(value: Any, annotation: Any) -> tuple[str, Any] | None:
    """JSON written by pydantic and the value rebuilt from it, or None when the
    annotation does not bring the value back equal and with the same types."""
    try:
        adapter = _adapter(annotation)
        data = adapter.dump_json(value, warnings="error")
        back = adapter.validate_json(data)
        if back != value or not same_types(value, back):
            return None  # e.g. a namedtuple as tuple, a str-Enum as str, bool as int
        return str(data.decode()), back
    except Exception:  # pydantic raises many types here; every one means "not this way"
        return None


def encode_checked(value: Any, annotation: Any = None) -> tuple[str, str | bytes, Any]:
    """Encode ``value`` for the log as ``(encoding, payload, decoded)``.

    ``decoded`` is the value as :func:`decode` rebuilds it from ``payload`` on replay
    (a fresh copy for containers; ints, strs and other immutable scalars as they are):
    hand it to the workflow so that the live run sees what every replay will see.

    Raises:
        Unserializable: when no encoding can write the value, when its pickle cannot
            be unpickled, or when it is nested too deeply to be written or read back.
    """
    kind = type(value)
    if kind is str:
        return JSON, _quote(value), value
    if kind is int:
        try:
            return JSON, int.__repr__(value), value  # JSON's text, without the encoder
        except ValueError:
            pass  # more digits than int<->str conversion allows: pickle it
    return _encode_value(value, annotation, True)


def encode(value: Any, annotation: Any = None) -> tuple[str, str | bytes]:
    """Encode ``value`` for the log, as ``(encoding, payload)``: :func:`encode_checked`
    without making the decoded value (a pickle is still checked to read back).

    Raises:
        Unserializable: as :func:`encode_checked`.
    """
    kind = type(value)
    if kind is str:
        return JSON, _quote(value)
    if kind is int:
        try:
            return JSON, int.__repr__(value)
        except ValueError:
            pass
    encoding, payload, _ = _encode_value(value, annotation, False)
    return encoding, payload


def _encode_value(value: Any, annotation: Any, copy: bool) -> tuple[str, str | bytes, Any]:
    try:
        return _encode_any(value, annotation, copy)
    except RecursionError as error:
        raise Unserializable(_type_name(value), _TOO_DEEP) from error


def _encode_any(value: Any, annotation: Any, copy: bool) -> tuple[str, str | bytes, Any]:
    kind = type(value)
    if kind in _SCALAR_TYPES:
        if kind is float and value - value == 0:  # finite: JSON writes its repr
            return JSON, float.__repr__(value), value
        if kind is not int:  # NaN, infinities, bool, None (a huge int goes on to pickle)
            return JSON, _compact(value), value
    elif is_plain_json(value):
        try:
            payload = _compact(value)
        except ValueError:
            pass  # an int with too many digits for JSON: pickle it
        else:
            return JSON, payload, loads(payload) if copy else None
    if _usable_annotation(annotation):
        written = _encode_pydantic(value, annotation)
        if written is not None:
            return PYDANTIC, written[0], written[1]
    try:
        data = cloudpickle.dumps(value)
    except RecursionError:
        raise
    except Exception as error:
        raise Unserializable(
            _type_name(value), f"it cannot be pickled ({type(error).__name__}: {error})"
        ) from error
    try:
        decoded = cloudpickle.loads(data)
    except RecursionError:
        raise
    except Exception as error:  # e.g. an __init__ that unpickling cannot call
        raise Unserializable(
            _type_name(value),
            f"it pickles but cannot be unpickled ({type(error).__name__}: {error}), so a "
            "replay could not read it back; give the class a __reduce__ that rebuilds it",
        ) from error
    return PICKLE, data, decoded


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
    """Rebuild a value written by :func:`encode` (or an exception, for ``error``).

    Raises:
        Unserializable: when the payload is nested too deeply to be read back.
    """
    try:
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
    except RecursionError:
        raise Unserializable(f"{encoding} payload", _TOO_DEEP) from None
    raise ValueError(f"unknown payload encoding {encoding!r}")


def same_value(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same value with exactly the same types: for
    checking a replayed result against the recorded one. Values that are not ``==``
    (NaN, objects without ``__eq__``) count as the same when they encode alike."""
    try:
        if not same_types(a, b):
            return False
        if a is b:
            return True
        try:
            if bool(a == b):
                return True
        except Exception:
            pass  # an __eq__ that raises or is ambiguous (arrays): compare encodings
        return encode(a) == encode(b)
    except (RecursionError, Unserializable):
        return False


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


# -- Argument digests ---------------------------------------------------------------------


def _key_order(item: list[Any]) -> tuple[Any, ...]:
    """Sort key of a canonical ``[key, value]`` pair: str keys by themselves (the order
    ``sort_keys`` gives), other keys by their canonical text, equal keys by value."""
    key = item[0]
    if type(key) is str:
        return (0, key, "")
    return (1, _compact(key), _compact(item[1]))


def _canonical(value: Any, fields: bool = False) -> Any:
    """A JSON-able form of ``value`` that is the same in every process, for digests.

    Dicts are sorted and sets too; dataclasses and pydantic models keep their field
    order under their type name (``fields``: inside one, where nested ones are plain
    field lists, as ``asdict``/``model_dump`` gave them). Other objects are described by
    a repr of their own (one without an address), else by their pickle state, else by a
    hash of their cloudpickle.
    """
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, dict):
        items = [[_canonical(k, fields), _canonical(v, fields)] for k, v in value.items()]
        items.sort(key=_key_order)
        return {"dict": items}
    if isinstance(value, list | tuple):
        return [_canonical(item, fields) for item in value]
    if isinstance(value, set | frozenset):
        return {"set": sorted(json.dumps(_canonical(item, fields)) for item in value)}
    form = _record_form(value)
    if form is not None:
        return form if fields else {_type_name(value): form}
    return {_type_name(value): _describe(value)}


def _record_form(value: Any) -> Any:
    """A dataclass's or pydantic model's fields in their order, or None for others."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dict": [[f.name, _canonical(getattr(value, f.name), True)]
                         for f in dataclasses.fields(value)]}
    dump = getattr(value, "model_dump", None)
    if not callable(dump) or isinstance(value, type):
        return None
    try:
        dumped = dump()
    except Exception:
        return None  # a serializer that fails: describe it like any object
    if type(dumped) is not dict:
        return _canonical(dumped, True)  # a RootModel
    raw = {**(getattr(value, "__pydantic_extra__", None) or {}), **vars(value)}
    # model_dump's value for scalars (serializers applied), the field itself for
    # containers and nested models, so that dicts inside are sorted like any dict.
    return {"dict": [[name, _canonical(raw[name] if name in raw and isinstance(
        field, _CONTAINERS) else field, True)] for name, field in dumped.items()]}


_CONTAINERS = (dict, list, tuple, set, frozenset)


def _describe(value: Any) -> Any:
    """The part of an object's canonical form below its type name.

    Never the type name alone: ``Order(100)`` and ``Order(999)`` must differ.
    """
    try:
        text = repr(value)
    except Exception:
        text = ""
    if (text and getattr(type(value), "__repr__", None) is not object.__repr__
            and " at 0x" not in text and "..." not in text):
        return text  # a repr of its own, without an address, is how digests were made
    if isinstance(value, types.FunctionType):
        # Not its pickle: a set in its closure would pickle in PYTHONHASHSEED order.
        cells = [cell.cell_contents for cell in value.__closure__ or ()]
        return {"function": [value.__module__, value.__qualname__, _code_form(value.__code__),
                             _canonical([cells, value.__defaults__, value.__kwdefaults__])]}
    try:
        reduced = value.__reduce_ex__(4)
    except Exception:
        reduced = None
    if isinstance(reduced, tuple) and len(reduced) >= 2:
        try:
            func, args, *rest = reduced
            parts = [getattr(func, "__module__", "") + "." + getattr(func, "__qualname__", ""),
                     _canonical(args)]
            parts += [_canonical(list(part) if isinstance(part, types.GeneratorType)
                                 or hasattr(part, "__next__") else part) for part in rest]
            return {"reduce": parts}
        except RecursionError:
            pass  # a cycle: the pickle below handles it
    try:
        data = cloudpickle.dumps(value)
    except Exception as error:
        raise Unserializable(
            _type_name(value),
            f"it is a call argument that can be neither described nor pickled for the "
            f"argument digest ({type(error).__name__}: {error})",
        ) from error
    return {"pickle": hashlib.blake2b(data, digest_size=16).hexdigest()}


def _code_form(code: types.CodeType) -> list[Any]:
    """A function's code: its bytecode, the names it uses and its constants (sorted
    where they are sets), nested code included."""
    consts = [_code_form(c) if isinstance(c, types.CodeType) else _canonical(c)
              for c in code.co_consts]
    return [code.co_code.hex(), list(code.co_names), consts]


ARGS_TEXT_LIMIT = 200
_SHORT_DIGEST = 16


def digest_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
    """A digest of call arguments that is stable across processes, and the text it was
    made from (cut to ARGS_TEXT_LIMIT characters), which the log keeps to be read.

    Independent of dict and set order and of ``PYTHONHASHSEED``.

    Raises:
        Unserializable: an argument can be neither described nor pickled.
    """
    scalars = (type(args[0]) in _SCALAR_TYPES if len(args) == 1  # the common case, fast
               else _SCALAR_TYPES.issuperset(map(type, args)))
    text = None
    if scalars and not kwargs:
        try:  # noqa: SIM105 (contextlib.suppress doubles the cost of this hot path)
            text = repr(args)  # scalars only: repr is exact, stable and cheaper than JSON
        except ValueError:
            pass  # an int with more digits than repr allows
    if text is None:
        try:
            text = _compact_sorted([args, kwargs])
        except (TypeError, ValueError, RecursionError):
            text = _canonical_text(args, kwargs)
    # Short texts are their own digest: exact, and no hashing on every replayed call.
    if len(text) <= _SHORT_DIGEST:
        return text, text
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    if len(text) > ARGS_TEXT_LIMIT:
        text = text[: ARGS_TEXT_LIMIT - 3] + "..."
    return digest, text


def _canonical_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        return _compact(_canonical([args, kwargs]))
    except (RecursionError, ValueError, Unserializable):
        pass  # too deep for the walk (a cycle), or an int with more digits than JSON allows
    try:
        data = cloudpickle.dumps((args, kwargs))
    except Exception:
        raise _undigestable(args, kwargs) from None
    return _compact({"pickle": hashlib.blake2b(data, digest_size=16).hexdigest()})


def _undigestable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Unserializable:
    """The error naming the first argument that can be neither described nor pickled."""
    named = [(f"argument {i + 1}", value) for i, value in enumerate(args)]
    named += [(f"argument {name}=", value) for name, value in kwargs.items()]
    for where, value in named:
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            return Unserializable(
                _type_name(value),
                f"{where} can be neither described nor pickled for the argument digest "
                f"({type(error).__name__}: {error}); pass plain data instead (an id rather "
                "than a client or a connection), or make the object picklable",
            )
    return Unserializable("tuple", "the call arguments cannot be digested")


def digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short digest of call arguments that is stable across processes."""
    return digest_text(args, kwargs)[0]
