"""MEDIBUS response payloads: measured data, alarms, date/time, device identification.

Fact sheet: shared/protocols/medibus.md §5-§8. Values are ASCII, right-aligned,
leading zeros as spaces, a '-' sign in front; a code absent from a response means
the value is invalid (devices omit invalid values), so nothing is invented for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = [
    "CP1_UNITS",
    "DeviceAlarm",
    "DeviceIdentity",
    "alarm_priority",
    "parse_alarms",
    "parse_datetime",
    "parse_identity",
    "parse_measured",
]

# Codepage 1 measured-data codes -> UCUM unit (fact sheet §6; L/bar = mL/mbar).
CP1_UNITS: Final[dict[str, str]] = {
    "05": "mbar", "06": "mL/mbar", "07": "mL/mbar", "08": "mbar/(L/s)", "09": "mL/min", "0B": "mbar/(L/s)",
    "64": "10.mL/min", "6B": "mbar", "71": "mbar", "72": "mbar", "73": "mbar", "74": "mbar", "78": "mbar",
    "79": "mbar", "7A": "L/min", "7B": "/min", "7D": "mbar", "7E": "L", "7F": "L", "81": "mL", "82": "L",
    "83": "mL", "84": "mL", "85": "mL", "88": "mL", "89": "mL", "8A": "%", "8B": "mL", "8D": "mbar",
    "B2": "mL/min", "B3": "%", "B4": "/min", "B5": "/min", "B6": "%", "B7": "L/min", "B8": "L/min",
    "B9": "L/min", "BD": "s", "C1": "Cel", "C9": "/(L.min)", "D5": "/min", "D6": "/min", "D9": "/min",
    "DA": "%", "DB": "%", "DF": "/min", "E1": "/min", "E3": "kPa", "E5": "mm[Hg]", "E6": "mm[Hg]", "E7": "1",
    "E8": "1", "E9": "%", "EA": "%", "EB": "%", "EF": "%", "F0": "%", "FB": "%", "FC": "%", "FF": "kPa",
}  # fmt: skip
# Magnitude-dependent twins (Evita 4, §6): one metric whichever the device chose.
TWINS: Final = {"82": ("88", 1000.0), "B8": ("B9", 1.0), "06": ("07", 1.0), "0B": ("08", 1.0)}
GERMAN_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAI", "JUN", "JUL", "AUG", "SEP", "OKT", "NOV", "DEZ")
# Also accepted: English spellings some firmware uses for the four that differ.
_MONTHS: Final = {name: i + 1 for i, name in enumerate(GERMAN_MONTHS)} | {"MAY": 5, "OCT": 10, "DEC": 12}


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None


def parse_measured(data: bytes) -> list[tuple[str, float | None]]:
    """{2 hex code, 4-char value} repeated; twins folded onto one code and unit."""
    out: list[tuple[str, float | None]] = []
    text = data.decode("ascii", errors="replace")
    for i in range(0, len(text) - 5, 6):
        code, value = text[i : i + 2].upper(), _number(text[i + 2 : i + 6])
        for main, (twin, scale) in TWINS.items():
            if code == twin:
                code, value = main, None if value is None else round(value / scale, 4)
        out.append((code, value))
    return out


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    codepage: int
    priority: int  # 1..31, 31 highest
    code: str
    phrase: str


def parse_alarms(data: bytes, codepage: int) -> list[DeviceAlarm]:
    """{priority char 0x30+p, 2 hex code, 12-char phrase} repeated (15 bytes each)."""
    out = []
    text = data.decode("ascii", errors="replace")
    for i in range(0, len(text) - 14, 15):
        priority = ord(text[i]) - 0x30
        if not 1 <= priority <= 31:
            continue
        phrase = text[i + 3 : i + 15].replace("$&", "LOW").replace('"#', "HIGH").replace("'@", "ALARM").strip()
        out.append(DeviceAlarm(codepage, priority, text[i + 1 : i + 3].upper(), phrase))
    return out


def alarm_priority(priority: int) -> str:
    """MEDIBUS priorities 1..31 in three bands (our convention; a site mapping can override).

    Evita 4 sends its red warnings (PAW HIGH, MIN VOL LOW) at 29-30."""
    if priority >= 21:
        return "high"
    if priority >= 11:
        return "medium"
    return "low"


_DATETIME: Final = re.compile(r"\s*(\d{1,2}):\s*(\d{1,2}):\s*(\d{1,2})\s*(\d{1,2})-([A-Za-z]{3})-?\s*(\d{1,2})")


def parse_datetime(data: bytes) -> datetime | None:
    """ "HH:MM:SS" + "DD-MMM-YY", German months; spaces for leading zeros tolerated (PM 8040)."""
    match = _DATETIME.match(data.decode("ascii", errors="replace"))
    if match is None:
        return None
    hour, minute, second, day, month_name, year = match.groups()
    month = _MONTHS.get(month_name.upper())
    if month is None:
        return None
    # Two-digit years: no MEDIBUS device predates 1990.
    full_year = 2000 + int(year) if int(year) < 90 else 1900 + int(year)
    try:
        return datetime(full_year, month, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    device_id: str
    name: str
    revision: str


def parse_identity(data: bytes) -> DeviceIdentity | None:
    """ID "NNNN" + name in apostrophes + revision "DD.DD:MM.MM"."""
    text = data.decode("ascii", errors="replace")
    first, last = text.find("'"), text.rfind("'")
    if len(text) < 4 or first != 4 or last <= first:
        return None
    return DeviceIdentity(text[:4], text[first + 1 : last], text[last + 1 :].strip())
