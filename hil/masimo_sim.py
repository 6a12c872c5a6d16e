"""Masimo ASCII 1 line encoder for every model variant (the device side).

Field order and widths per shared/protocols/masimo-ascii.md §2. Used by the
simulator, the demo, and as the encoder in codec round-trip tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from hil.scenarios import Vitals

__all__ = ["VARIANTS", "masimo_line"]

VARIANTS: Final = ("rad8", "radical5", "radical7", "rad7")
_SERIAL: Final = "0000056661"


def _exc(vitals: Vitals, variant: str, searching: bool = False) -> str:
    exc = 0x800  # Masimo SET running
    if searching:
        exc |= 0x008  # pulse search
    if vitals.sensor_off:
        exc |= 0x020 | 0x008
    if vitals.low_perfusion:
        exc |= 0x004
    width = {"radical5": 3, "rad7": 7}.get(variant, 6)
    return f"{exc:0{width}X}"


def masimo_line(variant: str, when: datetime, vitals: Vitals, alarm: int = 0, *, searching: bool = False) -> bytes:
    """One CR LF terminated line as the given model prints it. `searching`: no pulse found
    yet (EXC pulse search, values "not available" as dashes: masimo-ascii.md §3, §4)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Masimo variant {variant!r}; known: {', '.join(VARIANTS)}")
    off = vitals.sensor_off or searching
    spo2 = "---" if off else f"{vitals.spo2:03.0f}"
    bpm = "---" if off else f"{vitals.pulse:03.0f}"
    pi = "--.--" if off else f"{vitals.pi:05.2f}"
    stamp = when.strftime("%m/%d/%y %H:%M:%S")
    exc = _exc(vitals, variant, searching)
    if variant == "radical5":
        fields = [f"SPO2={spo2}%", f"BPM={bpm}", f"PI={pi}%", f"ALARM={alarm & 0xFF:02X}", f"EXC={exc}"]
    elif variant == "rad8":
        fields = [
            f"SN={_SERIAL}",
            f"SPO2={spo2}%",
            f"BPM={bpm}",
            f"PI={pi}%",
            "SPCO=--.-%",
            "SPMET=--.-%",
            "DESAT=--",
            "PIDELTA=+--",
            f"ALARM={alarm:04X}",
            f"EXC={exc}",
        ]
    elif variant == "radical7":
        fields = [
            f"SN={_SERIAL}",
            f"SPO2={spo2}%",
            f"BPM={bpm}",
            f"PI={pi}%",
            "SPCO=01.0%",
            "SPMET=00.8%",
            "DESAT=00",
            "PIDELTA=+00",
            "PVI=014",
            f"ALARM={alarm:04X}",
            f"EXC={exc}",
        ]
    else:  # rad7 colour: leading NULs, PI without '%', SpHb fields, EXC1
        fields = [
            f"SN={_SERIAL}",
            f"SPO2={spo2}%",
            f"BPM={bpm}",
            f"PI={pi}",
            "SPCO=--%",
            "SPMET=00.9%",
            "SPHB=13.1",
            "SPOC=18",
            "RESVD=---",
            "DESAT=00",
            "PIDELTA=+00",
            "PVI=015",
            f"ALARM={alarm:06X}",
            f"EXC={exc}",
            "EXC1=00000000",
        ]
    prefix = b"\x00\x00" if variant == "rad7" else b""
    return prefix + f"{stamp} {' '.join(fields)}\r\n".encode("ascii")
