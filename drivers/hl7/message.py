"""HL7 v2 message parsing: segments, delimiters from MSH, escape sequences.

Written here rather than taken from python-hl7 (untyped, alpha, splits on CR only
and leaves unescaping to the caller) or hl7apy (a schema validator far heavier than
the three message types we read): the bedside needs a small, typed, bounded
parser that accepts LF and CR LF between segments, takes its delimiters from MSH,
and unescapes after splitting, never before. Pure functions.

Fact sheet: shared/protocols/hl7-mllp.md §2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final

__all__ = ["Delimiters", "Hl7Error", "Hl7Message", "Segment", "escape", "parse", "parse_ts", "unescape"]

_CHARSETS: Final = {"ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8"}
_SEGMENT_BREAK: Final = re.compile(r"\r\n|\r|\n")
_TS: Final = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


class Hl7Error(ValueError):
    """A message that cannot be read as HL7 v2 (no MSH, broken delimiters)."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    fields: tuple[str, ...]  # fields[n] is SEG-n, still escaped

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""


def unescape(text: str, d: Delimiters) -> str:
    if d.escape not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        end = text.find(d.escape, i + 1) if ch == d.escape else -1
        if end < 0:
            out.append(ch)
            i += 1
            continue
        seq = text[i + 1 : end]
        simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape}
        if seq in simple:
            out.append(simple[seq])
        elif seq == ".br":
            out.append("\n")
        elif seq.startswith("X") and len(seq) % 2 == 1 and all(c in "0123456789abcdefABCDEF" for c in seq[1:]):
            out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
        else:
            out.append(text[i : end + 1])  # unknown escape: keep it as sent
        i = end + 1
    return "".join(out)


def escape(text: str, d: Delimiters) -> str:
    out = text.replace(d.escape, f"{d.escape}E{d.escape}")
    for ch, code in ((d.field, "F"), (d.component, "S"), (d.subcomponent, "T"), (d.repetition, "R")):
        out = out.replace(ch, f"{d.escape}{code}{d.escape}")
    return out.replace("\r", f"{d.escape}.br{d.escape}").replace("\n", f"{d.escape}.br{d.escape}")


@dataclass(frozen=True, slots=True)
class Hl7Message:
    segments: tuple[Segment, ...]
    delimiters: Delimiters

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def get(self, seg: Segment | None, n: int, comp: int = 1, rep: int = 1, sub: int = 1) -> str:
        """SEG-n, component, repetition and subcomponent (1-based), unescaped; "" if absent."""
        if seg is None:
            return ""
        d = self.delimiters
        raw = seg.raw(n)
        if seg.name == "MSH" and n <= 2:
            return raw
        reps = raw.split(d.repetition)
        if rep > len(reps):
            return ""
        comps = reps[rep - 1].split(d.component)
        if comp > len(comps):
            return ""
        subs = comps[comp - 1].split(d.subcomponent)
        return unescape(subs[sub - 1], d) if sub <= len(subs) else ""

    def repetitions(self, seg: Segment, n: int) -> list[str]:
        return [unescape(r, self.delimiters) for r in seg.raw(n).split(self.delimiters.repetition) if r]


def _charset(data: bytes) -> str:
    msh = data.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if len(msh) < 4:
        return "utf-8"
    fields = msh.split(msh[3:4])
    name = fields[17].decode("ascii", errors="replace").strip().upper() if len(fields) > 17 else ""
    return _CHARSETS.get(name, "utf-8")


def parse(data: bytes) -> Hl7Message:
    text = data.decode(_charset(data), errors="replace")
    lines = [line for line in _SEGMENT_BREAK.split(text) if line.strip()]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise Hl7Error("message does not start with an MSH segment")
    head = lines[0]
    fs = head[3]
    encoding = head[4 : head.index(fs, 4)] if fs in head[4:] else ""
    if len(encoding) < 4 or fs.isalnum() or len(set(encoding + fs)) != len(encoding) + 1:
        raise Hl7Error(f"MSH-2 encoding characters {encoding!r} are not four distinct delimiters")
    d = Delimiters(fs, encoding[0], encoding[1], encoding[2], encoding[3])
    segments = []
    for line in lines:
        parts = line.split(fs)
        name = parts[0]
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", name):
            raise Hl7Error(f"bad segment name {name!r}")
        fields = (name, fs, *parts[1:]) if name == "MSH" else tuple(parts)
        segments.append(Segment(name, tuple(fields)))
    return Hl7Message(tuple(segments), d)


def parse_ts(text: str) -> datetime | None:
    """HL7 DTM `YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]` -> naive (no zone) or aware datetime."""
    match = _TS.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        when = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int(float(fraction or 0) * 1_000_000),
        )
    except ValueError:
        return None
    if zone is None:
        return when
    sign = -1 if zone[0] == "-" else 1
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return when.replace(tzinfo=timezone(sign * offset))
