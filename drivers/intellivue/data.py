"""IntelliVue observation attributes -> numerics and alerts; monitor time -> device time.

Numerics are identified by the physio id inside each NuObsValue (compound NBP and
arterial pressures carry sys/dia/mean under one label); the label and its text
arrive only in the first poll reply after association, so they are remembered per
object handle for naming. Unknown attributes are skipped by their length.

Fact sheet: shared/protocols/intellivue-mib.md §6-§8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from drivers.intellivue.wire import (
    Attributes,
    MessageError,
    PollReply,
    Reader,
    decode_abs_time,
    decode_float,
)

__all__ = ["Alert", "MonitorClock", "Numeric", "NumericDecoder", "alerts_of", "state_flags", "ucum_unit"]

NOM_ATTR_ID_LABEL: Final = 0x0924
NOM_ATTR_ID_LABEL_STRING: Final = 0x0927
NOM_ATTR_NU_VAL_OBS: Final = 0x0950
NOM_ATTR_NU_CMPD_VAL_OBS: Final = 0x094B
NOM_ATTR_TIME_STAMP_ABS: Final = 0x0990
NOM_ATTR_TIME_STAMP_REL: Final = 0x0991
NOM_ATTR_TIME_ABS: Final = 0x0987
NOM_ATTR_TIME_REL: Final = 0x098F
NOM_ATTR_AL_MON_P_AL_LIST: Final = 0x0902
NOM_ATTR_AL_MON_T_AL_LIST: Final = 0x0904
MAX_HANDLES: Final = 1024  # labels remembered per association; a monitor has a few hundred objects
RT_PER_S: Final = 8000  # RelativeTime ticks (125 us)
RT_WRAP: Final = 1 << 32

# MeasurementState bits -> reading flags (quality comes from the flag sets in the normalizer).
_STATE_FLAGS: Final = (
    (0x8000, "invalid_measurement"),
    (0x4000, "questionable_measurement"),
    (0x2000, "unavailable"),
    (0x1000, "sensor_calibrating"),
    (0x0800, "test_data"),
    (0x0400, "demo_data"),
    (0x0040, "early_indication"),
    (0x0020, "measurement_ongoing"),
    (0x0002, "msmt_in_alarm"),
    (0x0001, "msmt_alarm_inhibited"),
)

# NOM_DIM_* unit codes -> UCUM (fact sheet §7 list).
UNITS: Final[dict[int, str]] = {
    0x0000: "",
    0x0200: "1",
    0x0220: "%",
    0x0512: "mm",
    0x0652: "mL",
    0x0880: "s",
    0x0892: "ms",
    0x09E0: "/min",
    0x0AA0: "/min",
    0x0AE0: "/min",
    0x0C00: "L/min",
    0x0F03: "kPa",
    0x0F20: "mm[Hg]",
    0x0F40: "cm[H2O]",
    0x0F72: "mbar",
    0x1140: "[degF]",
    0x17A0: "Cel",
}


def ucum_unit(code: int) -> str:
    return UNITS.get(code, f"NOM_DIM_0x{code:04X}")


def state_flags(state: int) -> frozenset[str]:
    return frozenset(name for bit, name in _STATE_FLAGS if state & bit)


@dataclass(frozen=True, slots=True)
class Numeric:
    handle: int
    physio_id: int
    label_id: int | None
    label_text: str
    state: int
    unit_code: int
    value: float | None
    special: str | None  # FLOAT special value name, if any
    device_time: datetime | None


@dataclass(frozen=True, slots=True)
class Alert:
    source: int  # physio id the alert is about
    code: int
    alert_type: int
    state: int
    text: str

    @property
    def priority(self) -> str:
        if self.alert_type & 0x0404:
            return "high"
        if self.alert_type & 0x0202:
            return "medium"
        return "low"

    @property
    def technical(self) -> bool:
        return not self.alert_type & 0x0700

    @property
    def flag(self) -> str:
        """Device-alarm flag: the rule engine reads the priority from the name."""
        kind = "tech" if self.technical else "phys"
        return f"alarm_{self.priority}_{kind}_0x{self.source:04x}_0x{self.code:04x}"


def _text(raw: bytes) -> str:
    """String attribute {length, UTF-16BE}; drops fill (0xFEFF) and NULs, keeps private glyphs.

    Never raises: a label is for people; the physio id identifies the value."""
    if len(raw) < 2:
        return ""
    data = raw[2 : 2 + int.from_bytes(raw[:2], "big")]
    chars = data[: len(data) // 2 * 2].decode("utf-16-be", errors="replace")
    return chars.replace("\ufeff", "").replace("\x00", "").strip()


class MonitorClock:
    """Maps RelativeTime to the monitor's wall time using the MDS create anchor."""

    def __init__(self) -> None:
        self.anchor_abs: datetime | None = None
        self.anchor_rel: int = 0

    def anchor(self, attrs: Attributes) -> None:
        abs_raw, rel_raw = attrs.get(NOM_ATTR_TIME_ABS), attrs.get(NOM_ATTR_TIME_REL)
        if abs_raw is None or rel_raw is None or len(rel_raw) != 4:
            return
        when = decode_abs_time(abs_raw)
        if when is not None:
            self.anchor_abs, self.anchor_rel = when, int.from_bytes(rel_raw, "big")

    def at(self, rel_time: int) -> datetime | None:
        if self.anchor_abs is None:
            return None
        delta = (rel_time - self.anchor_rel) % RT_WRAP
        if delta >= RT_WRAP // 2:  # before the anchor (a stamp older than the MDS create)
            delta -= RT_WRAP
        return self.anchor_abs + timedelta(seconds=delta / RT_PER_S)


@dataclass(slots=True)
class NumericDecoder:
    clock: MonitorClock = field(default_factory=MonitorClock)
    labels: dict[int, tuple[int | None, str]] = field(default_factory=dict)

    def reset(self) -> None:
        """A new association: handles may mean different objects now."""
        self.labels.clear()
        self.clock = MonitorClock()

    def numerics(self, reply: PollReply) -> list[Numeric]:
        snapshot_time = reply.abs_time or self.clock.at(reply.rel_time)
        out: list[Numeric] = []
        for _context, objects in reply.contexts:
            for handle, attrs in objects:
                out += self._object(handle, attrs, snapshot_time)
        return out

    def _object(self, handle: int, attrs: Attributes, snapshot_time: datetime | None) -> list[Numeric]:
        label_id, label_text = self.labels.get(handle, (None, ""))
        if NOM_ATTR_ID_LABEL in attrs and len(attrs[NOM_ATTR_ID_LABEL]) == 4:
            label_id = int.from_bytes(attrs[NOM_ATTR_ID_LABEL], "big")
        if NOM_ATTR_ID_LABEL_STRING in attrs:
            label_text = _text(attrs[NOM_ATTR_ID_LABEL_STRING])
        if (label_id, label_text) != (None, "") and (handle in self.labels or len(self.labels) < MAX_HANDLES):
            self.labels[handle] = (label_id, label_text)
        when = snapshot_time
        if NOM_ATTR_TIME_STAMP_ABS in attrs:
            when = decode_abs_time(attrs[NOM_ATTR_TIME_STAMP_ABS]) or when
        elif NOM_ATTR_TIME_STAMP_REL in attrs and len(attrs[NOM_ATTR_TIME_STAMP_REL]) == 4:
            when = self.clock.at(int.from_bytes(attrs[NOM_ATTR_TIME_STAMP_REL], "big")) or when
        values: list[bytes] = []
        if NOM_ATTR_NU_VAL_OBS in attrs:
            values.append(attrs[NOM_ATTR_NU_VAL_OBS])
        if NOM_ATTR_NU_CMPD_VAL_OBS in attrs:
            r = Reader(attrs[NOM_ATTR_NU_CMPD_VAL_OBS])
            r.u16()
            body = r.sub(r.u16())
            while body.remaining >= 10:
                values.append(body.take(10))
        out = []
        for raw in values:
            if len(raw) != 10:
                raise MessageError(f"NuObsValue of {len(raw)} bytes")
            r = Reader(raw)
            physio, state, unit = r.u16(), r.u16(), r.u16()
            value, special = decode_float(r.u32())
            out.append(Numeric(handle, physio, label_id, label_text, state, unit, value, special, when))
        return out


def alerts_of(reply: PollReply) -> list[Alert] | None:
    """Alerts in an alert-monitor reply; None when the reply carries no alarm list."""
    found = False
    alerts: list[Alert] = []
    for _context, objects in reply.contexts:
        for _handle, attrs in objects:
            for attr_id in (NOM_ATTR_AL_MON_P_AL_LIST, NOM_ATTR_AL_MON_T_AL_LIST):
                if attr_id in attrs:
                    found = True
                    alerts += _alarm_list(attrs[attr_id])
    return alerts if found else None


def _alarm_list(raw: bytes) -> list[Alert]:
    r = Reader(raw)
    r.u16()
    body = r.sub(r.u16())
    alerts = []
    while body.remaining >= 16:
        source, code, alert_type, state = body.u16(), body.u16(), body.u16(), body.u16()
        body.take(6)  # managed object of the alert
        body.u16()  # alert_info_id
        info = body.sub(body.u16())
        text = ""
        if info.remaining >= 12:  # StrAlMonInfo: inst no, text id, priority, flags, String
            info.take(10)
            text = _text(info.take(info.remaining))
        if alert_type:  # NO_ALERT entries are placeholders
            alerts.append(Alert(source, code, alert_type, state, text))
    return alerts
