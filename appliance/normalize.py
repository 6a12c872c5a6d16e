"""Reading -> Observation: MDC term, UCUM unit, UTC time, quality, bed and patient.

Which time an observation carries:
- `received` is the gateway's own time of arrival (monotonic-anchored UTC).
- `time` is the device's timestamp converted from the device's configured zone to
  UTC, when the device sends one; with no device clock it is `received`.
- Only live streams are judged by skew (drivers.family.DeviceTime, per protocol):
  a live device's clock more than `max_clock_skew_s` off the gateway is wrong, so
  `time` is `received` and the reading carries `clock_skew`. Skew is tracked per
  device as device UTC minus received; crossing the bound emits one `clock_skew`
  technical event (active), coming back emits one (inactive).
- A source that can legitimately send old data (a record the device stored,
  an episodic device, a time stated with its UTC offset) keeps its time; older
  than the bound it is flagged `late`, not replaced. Only a time in the future
  beyond the bound is distrusted (`clock_skew`, `received` instead).
- Stamped while the gateway's clock is not synchronised, a reading carries
  `clock_unsynced` (its `received`, and any time taken from it, may be off).

Invalid is never valid: a value in a unit that cannot be converted to its
term's unit loses its number (`unit_not_convertible`); a value that is not a finite number (NaN, inf, 1e400)
loses its number and carries `non_finite`; a value outside its term's plausible
range (appliance/core/plausible.py) keeps its number for the record but carries
`implausible`. All three make the observation invalid, so it can neither raise nor
clear a physiological alarm. While any metric of a device is invalid this way,
the device has one `invalid_value` technical event active (it ends when every
such metric has had a valid value again); the rules turn a persisting one into
the technical alarm for an invalid measurement.

`obs_id` (docs/wire.md, "Identity") is BLAKE2b-128 over the gateway id, the
device, the device time and the label, plus either the reading's `origin` (the
source's own identity, set by its codec: a message digest and row, a record number), so a
re-sent reading keeps its id across connections and restarts, or, for a stream
without identity, the gateway's boot id and the frame sequence, so a reading after
a restart never takes an earlier one's id. `bedside decode` uses a fixed boot id:
decoding the same bytes again yields the same ids.

Pure: no I/O, no clock of its own (received time is passed in).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Final

from appliance.core.model import Observation, Reading, TechnicalEvent
from appliance.core.plausible import plausible_range
from appliance.core.vocab import Quality, TechnicalKind
from appliance.identity import IdentityCheck
from drivers.family import DeviceTime
from drivers.registry import device_time, flag_classes, lookup

__all__ = ["DeviceContext", "Normalizer", "convert_unit", "flag_grades", "obs_id", "quality_of"]

# Flags the gateway itself sets; each device family declares how its own flags grade a
# value (drivers/<family>/family.py), and a flag means one thing whichever family sent it.
OWN_INVALID_FLAGS: Final = frozenset(
    # Judged here: not a finite number, outside the term's plausible range
    # (appliance/core/plausible.py), or in a unit that cannot be converted.
    # `patient_mismatch`: the device names another patient or bed (appliance/identity.py).
    {"non_finite", "implausible", "unit_not_convertible", "patient_mismatch"}
)
OWN_QUESTIONABLE_FLAGS: Final = frozenset({"clock_skew"})


# Spellings devices use for the same UCUM unit.
_UNIT_ALIASES: Final[dict[str, str]] = {"1/min": "/min", "bpm": "/min", "mmHg": "mm[Hg]"}
# (from, to) -> conversion; a monitor set to kPa or degF still feeds mmHg / Celsius rules.
_CONVERSIONS: Final = {
    ("kPa", "mm[Hg]"): lambda v: v * 760.0 / 101.325,
    ("[degF]", "Cel"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("mbar", "cm[H2O]"): lambda v: v * 1.019716,
    ("[lb_av]", "kg"): lambda v: v * 0.45359237,
    ("[in_i]", "cm"): lambda v: v * 2.54,
}


def convert_unit(value: float | None, unit: str, to_unit: str) -> tuple[float | None, bool]:
    """Value in the term's unit; False when the device's unit cannot be converted.

    A reading without a unit is taken to be in the term's unit (devices whose
    format fixes the unit, such as an oximeter's SpO2 field).
    """
    unit = _UNIT_ALIASES.get(unit, unit)
    if not unit or unit == to_unit:
        return value, True
    convert = _CONVERSIONS.get((unit, to_unit))
    if convert is None:
        return value, False
    return (None if value is None else round(convert(value), 2)), True


# A value beyond the device's scale (a monitor's under/over range): the measurement
# exists but has no number; clinically that is questionable, not absent.
RANGE_FLAGS: Final = frozenset({"under_range", "over_range"})
# Readings fetched from a device's record store (a meter's catch-up on reconnect).
STORED_FLAG: Final = "stored"
# A kept device time older than the skew bound (the value is as good; it is old news).
LATE_FLAG: Final = "late"
# Stamped while the gateway's clock was not synchronised (appliance/core/clocksync.py).
UNSYNCED_FLAG: Final = "clock_unsynced"


def flag_grades() -> tuple[frozenset[str], frozenset[str]]:
    """(invalid, questionable) flags: the gateway's own and every device family's."""
    return _with_own(flag_classes())


@functools.lru_cache(maxsize=4)  # hot path: one union per set of registered families
def _with_own(classes: tuple[frozenset[str], frozenset[str]]) -> tuple[frozenset[str], frozenset[str]]:
    return classes[0] | OWN_INVALID_FLAGS, classes[1] | OWN_QUESTIONABLE_FLAGS


def quality_of(value: float | None, flags: frozenset[str]) -> Quality:
    invalid, questionable = flag_grades()
    if value is None and flags & RANGE_FLAGS and not flags & invalid:
        return Quality.QUESTIONABLE
    if value is None or flags & invalid:
        return Quality.INVALID
    if flags & questionable:
        return Quality.QUESTIONABLE
    return Quality.VALID


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What the normalizer needs to know about the device a reading came from."""

    device_id: str
    protocol: str
    bed_id: str
    tz: tzinfo = UTC
    patient_id: str | None = None
    # Who made the id (the uplink's gateway id, else the bed): two gateways with the
    # same device ids never share an observation id.
    gateway_id: str = ""
    # Per gateway start (random); separates the sequences of two starts for readings
    # without an origin (see module doc). Fixed for `bedside decode`.
    boot_id: str = "replay"
    # The patient's other identifiers (the bed census's), accepted in a device's patient claim.
    patient_aliases: tuple[str, ...] = ()


@dataclass(slots=True)
class _SkewState:
    skewed: bool = False
    last_s: float = 0.0


@dataclass(slots=True)
class Normalizer:
    max_clock_skew_s: float | None = 300.0
    unmapped: Counter[str] = field(default_factory=Counter)
    unconvertible: Counter[str] = field(default_factory=Counter)
    _skew: dict[str, _SkewState] = field(default_factory=dict)
    # device -> metrics whose latest value the gateway judged invalid (bounded by
    # the term tables: only mapped metrics get here).
    _invalid: dict[str, set[str]] = field(default_factory=dict)
    identity: IdentityCheck = field(default_factory=IdentityCheck)

    def skew_s(self, device_id: str) -> float | None:
        state = self._skew.get(device_id)
        return None if state is None else state.last_s

    def normalize(
        self, reading: Reading, ctx: DeviceContext, received: datetime, *, clock_unsynced: bool = False
    ) -> tuple[Observation | None, list[TechnicalEvent]]:
        term = lookup(ctx.protocol, reading.label)
        if term is None:
            # Same line's mapped readings track the clock; nothing is lost here.
            self.unmapped[f"{ctx.protocol}:{reading.label}"] += 1
            return None, []
        unit = term.unit or reading.unit  # terms carried by the message take the message's unit
        raw = reading.value
        # A codec that met a non-number (a text 'NaN') passes no value and says so.
        finite = (raw is None or math.isfinite(raw)) and "non_finite" not in reading.flags
        value, unit_ok = convert_unit(raw if finite else None, reading.unit, unit)
        # Patient / bed claims checked against the pairing (a mismatch quarantines).
        claims = (ctx.device_id, ctx.bed_id, ctx.patient_id)
        flags, mismatched, events = self.identity.judge(
            reading, claims, received, lambda r: self._obs_id(r, ctx), ctx.patient_aliases
        )
        if clock_unsynced:
            flags = flags | {UNSYNCED_FLAG}
        judged = ""
        if not unit_ok:
            # Never file a value under a term in a unit the rules do not expect, and
            # never drop it silently either: the rules cannot judge this metric, so
            # it is an invalid observation without a value, and the technical alarm
            # for an invalid measurement says so (etCO2 in vol-%, SpO2 sent as a fraction).
            self.unconvertible[f"{ctx.protocol}:{reading.label} in {reading.unit}"] += 1
            value, flags = None, flags | {"unit_not_convertible"}
            judged = f"{term.metric} in {reading.unit!r}, not convertible to {unit!r}"
        elif not finite:
            shown = "a non-number" if raw is None else repr(raw)
            flags, judged = flags | {"non_finite"}, f"{term.metric}: {shown} is not a number"
        elif value is not None:
            bounds = plausible_range(term.metric, unit)
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                flags = flags | {"implausible"}
                judged = f"{term.metric} {value:g} {unit} outside {bounds[0]:g}..{bounds[1]:g}"
        time, flags, skew_events = self._time_of(reading, ctx, received, flags)
        events += skew_events
        quality = quality_of(value, flags)
        events += self._track_invalid(ctx, term.metric, judged, quality, received)
        obs = Observation(
            obs_id=self._obs_id(reading, ctx),
            metric=term.metric,
            code=term.code,
            value=value,
            unit=unit,
            time=time,
            received=received,
            quality=quality,
            device_id=ctx.device_id,
            bed_id=ctx.bed_id,
            patient_id=ctx.patient_id,
            flags=flags,
            quarantine=ctx.patient_id is None or mismatched,
        )
        return obs, events

    def _time_of(
        self, reading: Reading, ctx: DeviceContext, received: datetime, flags: frozenset[str]
    ) -> tuple[datetime, frozenset[str], list[TechnicalEvent]]:
        """The observation's time, its flags with `clock_skew` where due, and skew events."""
        if reading.device_time is None:
            return received, flags, []
        device_utc = self._to_utc(reading.device_time, ctx.tz)
        if self._keeps_time(reading, ctx.protocol, flags):
            bound = self.max_clock_skew_s
            ahead_s = (device_utc - received).total_seconds()
            if bound is not None and ahead_s > bound:
                return received, flags | {"clock_skew"}, []
            if bound is not None and -ahead_s > bound:
                return device_utc, flags | {LATE_FLAG}, []
            return device_utc, flags, []
        skewed, events = self._track_skew(ctx, device_utc, received)
        if skewed:
            return received, flags | {"clock_skew"}, events
        return device_utc, flags, events

    @staticmethod
    def _keeps_time(reading: Reading, protocol: str, flags: frozenset[str]) -> bool:
        """Whether this reading may legitimately be old: its time stands and says
        nothing about the device clock's skew."""
        if STORED_FLAG in flags:  # fetched from the device's record store
            return True
        kind = device_time(protocol)
        if kind is DeviceTime.EPISODIC:
            return True
        # A stated offset makes the time unambiguous; a bare one is only as good as the zone configured.
        return kind is DeviceTime.STATED and reading.device_time is not None and reading.device_time.tzinfo is not None

    def _track_invalid(
        self, ctx: DeviceContext, metric: str, judged: str, quality: Quality, received: datetime
    ) -> list[TechnicalEvent]:
        """One `invalid_value` condition per device: on with its first judged-invalid
        metric, off once every such metric has had a usable value again. A value
        the device itself marks invalid (sensor off, no value) neither starts nor
        ends it: the device reports those conditions itself."""
        metrics = self._invalid.get(ctx.device_id)
        if judged:
            if metrics is None:
                metrics = self._invalid[ctx.device_id] = set()
            was_clear = not metrics
            metrics.add(metric)
            if not was_clear:
                return []
            return [
                TechnicalEvent(
                    ctx.device_id, TechnicalKind.INVALID_VALUE, detail=judged, time=received, bed_id=ctx.bed_id
                )
            ]
        if metrics is None or metric not in metrics or quality is Quality.INVALID:
            return []
        metrics.discard(metric)
        if metrics:
            return []
        ended = TechnicalEvent(ctx.device_id, TechnicalKind.INVALID_VALUE, active=False, detail=f"{metric} valid again")
        return [replace(ended, time=received, bed_id=ctx.bed_id)]

    @staticmethod
    def _to_utc(device_time: datetime, tz: tzinfo) -> datetime:
        if device_time.tzinfo is None:
            device_time = device_time.replace(tzinfo=tz)
        return device_time.astimezone(UTC)

    def _track_skew(
        self, ctx: DeviceContext, device_utc: datetime, received: datetime
    ) -> tuple[bool, list[TechnicalEvent]]:
        state = self._skew.get(ctx.device_id)
        if state is None:  # not setdefault: that would build a state for every reading
            state = self._skew[ctx.device_id] = _SkewState()
        state.last_s = (device_utc - received).total_seconds()
        if self.max_clock_skew_s is None:
            return False, []
        skewed = abs(state.last_s) > self.max_clock_skew_s
        if skewed == state.skewed:
            return skewed, []
        state.skewed = skewed
        event = TechnicalEvent(
            ctx.device_id,
            TechnicalKind.CLOCK_SKEW,
            active=skewed,
            detail=f"device clock {state.last_s:+.0f} s from gateway (bound {self.max_clock_skew_s:g} s)",
            time=received,
            bed_id=ctx.bed_id,
        )
        return skewed, [event]

    @staticmethod
    def _obs_id(reading: Reading, ctx: DeviceContext) -> str:
        return obs_id(reading, ctx.gateway_id, ctx.device_id, ctx.boot_id)


def obs_id(reading: Reading, gateway_id: str, device_id: str, boot_id: str) -> str:
    """The observation id of `reading` (module doc). The kind tag keeps the two key
    shapes apart; parts are joined by NUL, which configured ids, times and origins
    never contain, and the label, which might, comes last: no two keys run together."""
    stamp = reading.device_time.isoformat() if reading.device_time else ""
    if reading.origin:
        parts: tuple[str, ...] = ("origin", gateway_id, device_id, reading.origin, stamp, reading.label)
    else:
        parts = ("stream", gateway_id, device_id, boot_id, str(reading.seq), stamp, reading.label)
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()
