"""Settings fields that carry their own limits, read by the config loader.

A component's settings dataclass declares each default once, with its limits in
the field's metadata (`choices`, `min`, `max`, `min_len`, `max_len`, `not_below`:
another field this one may not be below, and `only`: why the key is refused on a
device it does not apply to). A `part()` field is a settings dataclass of its own
whose keys sit in the enclosing table (a device's line settings and timing); an
`internal()` field is no key at all. The loader (appliance/config.py) checks a
file against them, so a limit is written once too.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from typing import Any, Final

__all__ = ["Fail", "ItemBuilder", "build_settings", "internal", "part", "setting", "table_fields", "table_values"]

Fail = typing.Callable[[str, str], typing.NoReturn]
ItemBuilder = typing.Callable[[Any, str, Fail], Any]
_Builders = typing.Mapping[type, ItemBuilder]


def setting(default: Any = dataclasses.MISSING, **limits: Any) -> Any:
    return dataclasses.field(default=default, metadata=limits)


def part(cls: Any = None) -> Any:
    """A settings dataclass whose keys are read from the enclosing table (no default: required)."""
    if cls is None:
        return dataclasses.field(metadata={"part": True})
    return dataclasses.field(default_factory=cls, metadata={"part": True})


def internal(default_factory: Any) -> Any:
    """A field the program fills in; a table naming it is refused (unknown key)."""
    return dataclasses.field(default_factory=default_factory, metadata={"internal": True})


def table_fields(cls: Any) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """key -> (field, type hint) of every key a table of `cls` takes, its parts' keys included."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[dataclasses.Field[Any], Any]] = {}
    for fld in dataclasses.fields(cls):
        if fld.metadata.get("internal"):
            continue
        if fld.metadata.get("part"):
            for key, found in table_fields(hints[fld.name]).items():
                out.setdefault(key, found)
        else:
            out[fld.name] = (fld, hints[fld.name])
    return out


def table_values(obj: Any) -> dict[str, Any]:
    """key -> value of a settings object, as its table spells it (parts flattened)."""
    out: dict[str, Any] = {}
    for fld in dataclasses.fields(obj):
        if fld.metadata.get("internal"):
            continue
        value = getattr(obj, fld.name)
        if fld.metadata.get("part"):
            for key, inner in table_values(value).items():
                out.setdefault(key, inner)
        else:
            out[fld.name] = value
    return out


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _check(key: str, value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if choices is not None and value not in choices:
        hint = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
        return "must be one of " + ", ".join(str(c) for c in choices) + hint
    if "min" in meta and value < meta["min"]:
        return f"must be at least {meta['min']}"
    if "max" in meta and value > meta["max"]:
        return f"must be at most {meta['max']}"
    if "min_len" in meta and len(value) < meta["min_len"]:
        return "must not be empty"
    if "max_len" in meta and len(value) > meta["max_len"]:
        return f"must be at most {meta['max_len']} characters"
    return None


def build_settings(
    cls: Any, raw: Any, where: str, fail: Fail, item_builders: typing.Mapping[type, ItemBuilder] | None = None
) -> Any:
    """`cls` from a TOML table: unknown keys, types, finiteness and limits, one line each.
    `item_builders`: how items of an array of tables are built, by item type."""
    if not isinstance(raw, dict):
        fail(where, "must be a table")
    known = table_fields(cls)
    for key in raw:
        if key not in known:
            fail(f"{where}.{key}".lstrip("."), "unknown key" + did_you_mean(key, known))
    return _build(cls, raw, where, fail, item_builders or {})


def _build(cls: Any, raw: dict[str, Any], where: str, fail: Fail, item_builders: _Builders) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):
        name, hint = fld.name, hints[fld.name]
        if fld.metadata.get("internal"):
            continue
        if fld.metadata.get("part"):
            kwargs[name] = _build(hint, raw, where, fail, item_builders)
            continue
        key = f"{where}.{name}".lstrip(".")
        if name in raw:
            kwargs[name] = _value(fld, hint, raw[name], key, (fail, item_builders))
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            fail(key, "missing required key")
    obj = cls(**kwargs)
    for fld in dataclasses.fields(cls):
        other = fld.metadata.get("not_below")
        if other and getattr(obj, fld.name) < getattr(obj, other):
            fail(f"{where}.{fld.name}".lstrip("."), f"must not be below {other}")
    return obj


def _value(fld: dataclasses.Field[Any], hint: Any, value: Any, key: str, ctx: tuple[Fail, _Builders]) -> Any:
    fail, item_builders = ctx
    if dataclasses.is_dataclass(hint):
        return build_settings(hint, value, key, fail, item_builders)
    if typing.get_origin(hint) is dict:
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )
        if not ok:
            fail(key, "must be a table of string arrays")
        return {k: tuple(v) for k, v in value.items()}
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            fail(key, "must be an array of strings")
        return tuple(value)
    if typing.get_origin(hint) is tuple:
        item_cls = typing.get_args(hint)[0]
        if not isinstance(value, list):
            fail(key, "must be an array of tables")
        build = item_builders.get(item_cls) or functools.partial(build_settings, item_cls, item_builders={})
        return tuple(build(v, item_key(key, i, v), fail) for i, v in enumerate(value))
    if isinstance(hint, types.UnionType) or not _type_ok(value, hint):
        fail(key, f"must be {_type_name(hint)}, not {type(value).__name__}")
    # nan passes every min/max comparison; a non-finite timer crash-loops its task.
    if hint is float and not math.isfinite(value):
        fail(key, f"must be a finite number, not {value}")
    problem = _check(key, value, fld.metadata)
    if problem:
        fail(key, problem)
    return float(value) if hint is float else value


_NAMEABLE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def item_key(key: str, index: int, item: Any) -> str:
    """How an error names an item of an array of tables: by its `id` when it has a
    plain one (`devices["spo2-left"]`: what the person wrote), else by position."""
    ident = item.get("id") if isinstance(item, dict) else getattr(item, "id", None)
    if isinstance(ident, str) and _NAMEABLE_ID.fullmatch(ident):
        return f'{key}["{ident}"]'
    return f"{key}[{index}]"


def did_you_mean(word: str, known: typing.Iterable[str]) -> str:
    """`; did you mean 'baud'?` for the closest known spelling, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
