"""Canonical records every layer speaks, and their JSON-lines form.

Codecs emit `Reading` and `TechnicalEvent`; the normalizer turns readings into
`Observation`; the rule engine emits `AlarmEvent`. All are frozen and slotted so a
record handed to the alarm path cannot be changed behind its back.

JSON-lines form: one object per line, a `type` key (`reading`, `technical`,
`observation`, `alarm`), times as RFC 3339 UTC with `Z`, codes as integers. This
module deliberately knows nothing about MDC tables or devices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from appliance.core.errors import BedsideInputError
from appliance.core.vocab import AlarmEventState, Priority, Quality, TechnicalKind

__all__ = [
    "QUALITIES",
    "TECHNICAL_KINDS",
    "AlarmEvent",
    "DeviceEvent",
    "Observation",
    "Quality",
    "Reading",
    "Record",
    "RecordFormatError",
    "TechnicalEvent",
    "format_time",
    "from_json_line",
    "parse_time",
    "to_json_dict",
    "to_json_line",
]

QUALITIES: Final = tuple(Quality)
# Every kind a technical event may carry (TechnicalKind is the source).
TECHNICAL_KINDS: Final = frozenset(TechnicalKind)


class RecordFormatError(BedsideInputError, ValueError):
    """A JSON line does not describe a canonical record."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One value as the device sent it: native label and unit, device clock."""

    device_id: str
    label: str
    value: float | None
    unit: str
    device_time: datetime | None = None
    flags: frozenset[str] = frozenset()
    # Position of the frame in the decoded stream; lets the normalizer derive a
    # deterministic id for devices that send no clock.
    seq: int = 0
    # The source's own identity of this reading (a message's digest and row, a
    # device's record number), "" if it has none. With one, the observation id
    # does not depend on the gateway's start: a re-sent reading keeps its id.
    origin: str = ""
    # The device's own words for the alarm flags it raises (flag, text): the IntelliVue
    # alert string, the HL7 R40 OBX text, the MEDIBUS alarm phrase. People read these;
    # rules key on the flags.
    texts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TechnicalEvent:
    """A link or device condition. `active` False means the condition ended."""

    device_id: str
    # A TechnicalKind member when emitted here; a plain string when parsed from JSON
    # lines or a store (equal to the member either way).
    kind: str
    active: bool = True
    count: int = 0
    detail: str = ""
    time: datetime | None = None
    bed_id: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """The canonical reading (IEEE 11073 MDC code, UCUM unit, UTC time)."""

    obs_id: str
    metric: str
    code: int
    value: float | None
    unit: str
    time: datetime
    received: datetime
    quality: Quality
    device_id: str
    bed_id: str
    patient_id: str | None
    flags: frozenset[str] = frozenset()
    # True while the device is not paired to a patient: downstream must hold the
    # data apart rather than file it to a chart.
    quarantine: bool = False


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    alarm_id: str
    rule_id: str
    bed_id: str
    priority: Priority
    kind: Literal["physiological", "technical"]
    state: AlarmEventState
    time: datetime
    observation_ids: tuple[str, ...] = field(default_factory=tuple)
    message: str = ""
    # Who the alarm is about, for consumers that file it: the device whose
    # observation (or condition) raised it, None for alarms over several devices;
    # the bed's patient, None while unpaired.
    device_id: str | None = None
    patient_id: str | None = None


DeviceEvent = Reading | TechnicalEvent
Record = Reading | TechnicalEvent | Observation | AlarmEvent

_TYPE_NAMES: Final[dict[type, str]] = {
    Reading: "reading",
    TechnicalEvent: "technical",
    Observation: "observation",
    AlarmEvent: "alarm",
}
_TYPES_BY_NAME: Final[dict[str, Any]] = {name: cls for cls, name in _TYPE_NAMES.items()}
_TIME_KEYS: Final = frozenset({"time", "received", "device_time"})


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with `Z`; naive device times are written without a zone."""
    if value.tzinfo is None:
        return value.isoformat(timespec="milliseconds")
    utc = value.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_json_dict(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _TYPE_NAMES[type(record)]}
    for name in record.__dataclass_fields__:
        value = getattr(record, name)
        if isinstance(value, datetime):
            value = format_time(value)
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN/Infinity; the normalizer flags such values non_finite
        out[name] = value
    return out


def to_json_line(record: Record) -> str:
    # allow_nan=False: a bare NaN/Infinity token is not JSON and breaks strict consumers.
    return json.dumps(to_json_dict(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _no_constants(name: str) -> Any:
    raise RecordFormatError(f"{name} is not a JSON number")


def from_json_line(line: str) -> Record:
    """Parse one JSON line back into its record; raises RecordFormatError."""
    try:
        raw = json.loads(line, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise RecordFormatError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    except RecursionError:
        raise RecordFormatError("not JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise RecordFormatError("not a JSON object")
    cls = _TYPES_BY_NAME.get(raw.pop("type", None))
    if cls is None:
        raise RecordFormatError("missing or unknown 'type'")
    kwargs: dict[str, Any] = {}
    for name, raw_value in raw.items():
        if name not in cls.__dataclass_fields__:
            raise RecordFormatError(f"unknown key {name!r} for {_TYPE_NAMES[cls]}")
        value: Any = raw_value
        if name in _TIME_KEYS and isinstance(raw_value, str):
            try:
                value = parse_time(raw_value)
            except ValueError as exc:
                raise RecordFormatError(f"bad time in {name!r}: {raw_value!r}") from exc
        elif name == "flags" and isinstance(raw_value, list):
            value = frozenset(raw_value)
        elif name == "observation_ids" and isinstance(raw_value, list):
            value = tuple(raw_value)
        elif name == "texts" and isinstance(raw_value, list):
            value = tuple(tuple(pair) if isinstance(pair, list) else pair for pair in raw_value)
        kwargs[name] = value
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise RecordFormatError(str(exc)) from exc
