"""One strict loader for every config dict: dataclass fields are the schema.

``from_dict(Config, data, where)`` builds a dataclass from a mapping read from YAML, JSON or JSONL,
and refuses, with one line naming the file (``where``) and the key:

- a key the dataclass does not have, or a required key that is missing;
- a value of the wrong type: ``bool`` is never an ``int``, ``2.7`` is never an ``int``, a string
  is never a number, NaN and ±inf are never a ``float``; lists become the annotated
  ``tuple``/``list``; nested dataclasses are loaded the same way (``where`` gets ``.key``);
- a value outside the field's range, declared in ``dataclasses.field(metadata=...)`` with
  ``gt``, ``ge``, ``lt``, ``le`` (numbers) or ``choices`` (any value).

It is deliberately stricter than pydantic's lax mode (which turns ``True`` into ``1`` and
``"yes"`` into ``True``) and, unlike pydantic's strict mode, takes plain dicts for stdlib
dataclasses. Errors raised by the dataclass's own ``__post_init__`` (a ``ValueError``) are
re-raised as :class:`~lingen_model.errors.InputError` prefixed with ``where``.
(docs/design.md §1, "Errors".)
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from lingen_model.errors import InputError

T = TypeVar("T")

_NONE = type(None)


#: Words YAML 1.1 (PyYAML) reads as booleans when unquoted.
_YAML_BOOL_WORDS = frozenset({"off", "on", "no", "yes", "true", "false", "y", "n"})


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _check(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint``; return it converted (lists → tuples where annotated)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        errors = []
        for option in (a for a in args if a is not _NONE):
            try:
                return _check(value, option, where)
            except InputError as e:
                errors.append(str(e))
        raise InputError(errors[0] if len(errors) == 1 else f"{where} must be one of the types "
                         f"{', '.join(getattr(a, '__name__', str(a)) for a in args)}, got {_kind(value)}")
    if origin is typing.Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args if a == value):
            hint = ""
            if isinstance(value, bool) and any(isinstance(a, str) and a.lower() in _YAML_BOOL_WORDS for a in args):
                hint = " (YAML reads a bare off/on/no/yes as a boolean: quote the word, e.g. \"off\")"
            raise InputError(f"{where} must be one of {', '.join(repr(a) for a in args)}, got {value!r}{hint}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where} must be true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where} must be an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where} must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise InputError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{where} must be a string, got {_kind(value)}")
        return value
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where} must be a list, got {_kind(value)}")
        container = origin or hint
        if container is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(f"{where} must be a list of {len(args)} values, got {len(value)}")
            return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return container(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise InputError(f"{where} must be a mapping, got {_kind(value)}")
        kt, vt = args if args else (Any, Any)
        return {_check(k, kt, f"{where} key"): _check(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    return value  # an annotation this loader does not know: left to the dataclass


def _check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    if "choices" in meta and value not in meta["choices"]:
        raise InputError(f"{where} must be one of {', '.join(repr(c) for c in meta['choices'])}, got {value!r}")
    if value is None or not isinstance(value, (int, float)):
        return
    for key, ok, text in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                          ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<=")):
        if key in meta and not ok(value, meta[key]):
            raise InputError(f"{where} must be {text} {meta[key]}, got {value!r}")


def from_dict(cls: type[T], data: Any, where: str, require_all: bool = False) -> T:
    """Build the dataclass ``cls`` from the mapping ``data``, strictly (see the module docstring).

    Args:
        cls: a dataclass type; its annotations and ``field(metadata=...)`` are the schema.
        data: the mapping read from a file (YAML/JSON object).
        where: what to name in errors, e.g. ``"run.yaml: data"`` or ``"prompts.jsonl:3"``.
        require_all: every field must be given (a saved config then never picks up changed defaults).

    Raises:
        InputError: ``data`` is not a mapping; an unknown or missing key; a wrong type; a value out
            of range; or the dataclass's own check failed. The message is one line:
            ``"{where}: key must be ..."``.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a mapping of keys, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [str(k) for k in data if k not in fields]
    if unknown:
        raise InputError(f"{where}: unknown key(s): {', '.join(sorted(unknown))} (known: {', '.join(fields)})")
    missing = [n for n, f in fields.items() if n not in data and (require_all or (
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))]
    if missing:
        raise InputError(f"{where}: missing key(s): {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        key_where = f"{where}: {name}"
        values[name] = _check(value, hints.get(name, Any), key_where)
        _check_range(values[name], fields[name].metadata, key_where)
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{where}: {first}") from None
