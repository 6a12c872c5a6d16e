"""S/5 displayed values (`dri_phdb`, BASIC class) -> labelled values with flags.

Every BASIC group of the fact sheet is decoded: ECG, four + two invasive pressures
(named by their site label, never by channel), NIBP, four temperatures (by site),
SpO2, CO2, O2, N2O, anaesthetic agent, flow & volume, CO & wedge, NMT, the ECG
extra block and SvO2. Values are int16 x factor; raw < -32000 is a special code
(fact sheet §7): invalid / not updated / discontinuity / not calibrated give no
value, under / over range give no value but a questionable flag. A group whose
status bit 0 (module exists) is clear is skipped.

Fact sheet: shared/protocols/datex-s5.md §4.2-§7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ["PHDB_BYTES", "Value", "decode_phdb", "phdb_class"]

PHDB_BYTES: Final = 278
SPECIAL: Final[dict[int, str]] = {
    -32767: "missing",
    -32766: "not_updated",
    -32765: "discontinuity",
    -32764: "under_range",
    -32763: "over_range",
    -32762: "not_calibrated",
}
PRESSURE_SITES: Final = {
    1: "ART", 2: "CVP", 3: "PA", 4: "RAP", 5: "RVP", 6: "LAP", 7: "ICP", 8: "ABP",
    15: "SP", 16: "FEM", 17: "UAC", 18: "UVC", 19: "ICP2", 22: "FEMV",
}  # fmt: skip
TEMP_SITES: Final = {
    1: "ESO", 2: "NASO", 3: "TYMP", 4: "RECT", 5: "BLAD", 6: "AXIL", 7: "SKIN", 8: "AIRW",
    9: "ROOM", 10: "MYO", 15: "CORE", 16: "SURF",
}  # fmt: skip
ECG_LEADS: Final = {1: "I", 2: "II", 3: "III", 4: "AVR", 5: "AVL", 6: "AVF", 7: "V"}

# (group, header offset, [(field, offset from the group header, factor, unit)]);
# the fact sheet's absolute offsets are header offset + these.
Field = tuple[str, int, float, str]
_PRESSURE: Final[tuple[Field, ...]] = (
    ("SYS", 6, 0.01, "mm[Hg]"), ("DIA", 8, 0.01, "mm[Hg]"), ("MEAN", 10, 0.01, "mm[Hg]"), ("HR", 12, 1, "/min"),
)  # fmt: skip
GROUPS: Final[tuple[tuple[str, int, tuple[Field, ...]], ...]] = (
    ("ECG", 4, (("HR", 6, 1, "/min"), ("ST1", 8, 0.01, "mm"), ("ST2", 10, 0.01, "mm"), ("ST3", 12, 0.01, "mm"),
                ("IMP_RR", 14, 1, "/min"))),
    ("P1", 20, _PRESSURE), ("P2", 34, _PRESSURE), ("P3", 48, _PRESSURE), ("P4", 62, _PRESSURE),
    ("NIBP", 76, _PRESSURE),
    ("T1", 90, (("TEMP", 6, 0.01, "Cel"),)), ("T2", 98, (("TEMP", 6, 0.01, "Cel"),)),
    ("T3", 106, (("TEMP", 6, 0.01, "Cel"),)), ("T4", 114, (("TEMP", 6, 0.01, "Cel"),)),
    ("SPO2", 122, (("SPO2", 6, 0.01, "%"), ("PR", 8, 1, "/min"), ("IR_AMP", 10, 0.01, "%"))),
    ("CO2", 136, (("ET", 6, 0.01, "%"), ("FI", 8, 0.01, "%"), ("RR", 10, 1, "/min"),
                  ("AMB_PRESS", 12, 0.1, "mm[Hg]"))),
    ("O2", 150, (("ET", 6, 0.01, "%"), ("FI", 8, 0.01, "%"))),
    ("N2O", 160, (("ET", 6, 0.01, "%"), ("FI", 8, 0.01, "%"))),
    ("AA", 170, (("ET", 6, 0.01, "%"), ("FI", 8, 0.01, "%"), ("MAC_SUM", 10, 0.01, "1"))),
    ("FV", 182, (("RR", 6, 1, "/min"), ("PPEAK", 8, 0.01, "cm[H2O]"), ("PEEP", 10, 0.01, "cm[H2O]"),
                 ("PPLAT", 12, 0.01, "cm[H2O]"), ("TV_INSP", 14, 0.1, "mL"), ("TV_EXP", 16, 0.1, "mL"),
                 ("COMPLIANCE", 18, 0.01, "mL/cm[H2O]"), ("MV_EXP", 20, 0.01, "L/min"))),
    ("CO", 204, (("CO", 6, 1, "mL/min"), ("BLOOD_TEMP", 8, 0.01, "Cel"), ("REF", 10, 0.01, "%"),
                 ("PCWP", 12, 0.01, "mm[Hg]"))),
    ("NMT", 218, (("T1", 6, 0.1, "%"), ("TRATIO", 8, 0.1, "%"))),
    ("SVO2", 236, (("SVO2", 6, 0.01, "%"),)),
    ("P5", 244, _PRESSURE), ("P6", 258, _PRESSURE),
)  # fmt: skip
ECG_EXTRA: Final = (("HR_ECG", 230), ("HR_MAX", 232), ("HR_MIN", 234))


@dataclass(frozen=True, slots=True)
class Value:
    label: str
    value: float | None
    unit: str
    flags: frozenset[str]


def phdb_class(sub: bytes) -> int:
    """0 BASIC, 1 EXT1, 2 EXT2, 3 EXT3 (bits 8-11 of cl_drilvl_subt)."""
    word: int = struct.unpack_from("<H", sub, 276)[0]
    return (word >> 8) & 0x0F


def phdb_time(sub: bytes) -> datetime | None:
    """Subrecord time: Unix seconds of the monitor's local clock, returned naive."""
    seconds = struct.unpack_from("<I", sub, 0)[0]
    if seconds == 0:
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _scaled(raw: int, factor: float) -> tuple[float | None, frozenset[str]]:
    if raw < -32000:
        kind = SPECIAL.get(raw, "missing")
        # Out of range is a real measurement beyond the scale: questionable, not absent.
        return None, frozenset({kind} if kind in ("under_range", "over_range") else {kind, "missing"})
    return round(raw * float(factor), 2), frozenset()


def _group_flags(group: str, status: int, label: int) -> frozenset[str]:
    flags = set()
    if not status & 0x02:
        flags.add("measurement_off")
    if group == "ECG":
        if status & 0x0180:
            flags.add("artifact")
        if status & 0x0004:
            flags.add("asystole")
    elif group.startswith("P") and group[1:].isdigit() and status & 0x0004:
        flags.add("sensor_calibrating")  # zeroing
    elif group == "NIBP" and label & 0x0100:
        flags.add("old_data")
    elif (group == "CO2" and status & 0x0018) or (group in ("O2", "N2O", "AA") and status & 0x0004):
        flags.add("sensor_calibrating")
    return frozenset(flags)


def _name(group: str, field: str, label: int) -> str:
    if group.startswith("P") and group[1:].isdigit():
        return f"{PRESSURE_SITES.get(label, group)}_{field}"
    if group.startswith("T") and group[1:].isdigit():
        return f"T_{TEMP_SITES.get(label, group)}"
    if group == "ECG" and field.startswith("ST"):
        lead = (label >> (4 * (3 - int(field[2])))) & 0x0F  # channel 1 in bits 8-11
        return f"ST_{ECG_LEADS.get(lead, field)}"
    if group in ("ECG", "SPO2", "SVO2") and field in ("HR", "SPO2", "SVO2"):
        return field
    return f"{group}_{field}"


def decode_phdb(sub: bytes) -> list[Value]:
    """Displayed values of one BASIC-class subrecord (278 bytes)."""
    if len(sub) < PHDB_BYTES:
        raise ValueError(f"physiological subrecord of {len(sub)} bytes, need {PHDB_BYTES}")
    out: list[Value] = []
    for group, offset, fields in GROUPS:
        status, label = struct.unpack_from("<IH", sub, offset)
        if not status & 0x01:
            continue  # module not present
        group_flags = _group_flags(group, status, label)
        for field, rel, factor, unit in fields:
            raw = struct.unpack_from("<h", sub, offset + rel)[0]
            value, flags = _scaled(raw, factor)
            out.append(Value(_name(group, field, label), value, unit, flags | group_flags))
    out += _co2_partial_pressure(out)
    ecg_present = struct.unpack_from("<I", sub, 4)[0] & 0x01
    if ecg_present:
        for name, offset in ECG_EXTRA:
            value, flags = _scaled(struct.unpack_from("<h", sub, offset)[0], 1)
            out.append(Value(name, value, "/min", flags))
    return out


def _co2_partial_pressure(values: list[Value]) -> list[Value]:
    """etCO2 in mmHg = et % x ambient pressure / 100 (the monitor sends only %)."""
    by_label = {v.label: v for v in values}
    et, amb = by_label.get("CO2_ET"), by_label.get("CO2_AMB_PRESS")
    if et is None or amb is None:
        return []
    if et.value is None or amb.value is None:
        return [Value("CO2_ET_P", None, "mm[Hg]", et.flags | amb.flags | {"missing"})]
    return [Value("CO2_ET_P", round(et.value * amb.value / 100, 1), "mm[Hg]", et.flags)]
