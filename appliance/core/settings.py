"""Settings fields that carry their own limits, read by the config loader.

A component's settings dataclass declares each default once, with its limits in
the field's metadata (`choices`, `min`, `max`, `min_len`, `max_len`, and `only`:
why the key is refused on a device it does not apply to). The loader
(appliance/config.py) checks a file against them, so a limit is written once too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

__all__ = ["Fail", "ItemBuilder", "build_settings", "setting"]

Fail = typing.Callable[[str, str], typing.NoReturn]
ItemBuilder = typing.Callable[[Any, str, Fail], Any]


def setting(default: Any = dataclasses.MISSING, **limits: Any) -> Any:
    return dataclasses.field(default=default, metadata=limits)


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
        return "must be one of " + ", ".join(str(c) for c in choices)
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
    item_builders = item_builders or {}
    if not isinstance(raw, dict):
        fail(where, "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            fail(f"{where}.{key}".lstrip("."), "unknown key")
    kwargs: dict[str, Any] = {}
    for name, fld in fields.items():
        key = f"{where}.{name}".lstrip(".")
        hint = hints[name]
        if name not in raw:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                fail(key, "missing required key")
            continue
        value = raw[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_settings(hint, value, key, fail, item_builders)
            continue
        if typing.get_origin(hint) is dict:
            ok = isinstance(value, dict) and all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
            )
            if not ok:
                fail(key, "must be a table of string arrays")
            kwargs[name] = {k: tuple(v) for k, v in value.items()}
            continue
        if typing.get_origin(hint) is tuple:
            item_cls = typing.get_args(hint)[0]
            if not isinstance(value, list):
                fail(key, "must be an array of tables")
            build = item_builders.get(item_cls) or functools.partial(build_settings, item_cls, item_builders={})
            kwargs[name] = tuple(build(v, f"{key}[{i}]", fail) for i, v in enumerate(value))
            continue
        if isinstance(hint, types.UnionType) or not _type_ok(value, hint):
            fail(key, f"must be {_type_name(hint)}, not {type(value).__name__}")
        # nan passes every min/max comparison; a non-finite timer crash-loops its task.
        if hint is float and not math.isfinite(value):
            fail(key, f"must be a finite number, not {value}")
        problem = _check(key, value, fld.metadata)
        if problem:
            fail(key, problem)
        kwargs[name] = float(value) if hint is float else value
    return cls(**kwargs)
