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
from typing import Final, cast

from appliance.core.errors import BedsideInputError

__all__ = [
    "MAX_SEGMENTS",
    "Delimiters",
    "Hl7Error",
    "Hl7Message",
    "Hl7TimeError",
    "Segment",
    "escape",
    "parse",
    "parse_ts",
    "reencode",
    "unescape",
]

_CHARSETS: Final = {"ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8"}
_SEGMENT_BREAK: Final = re.compile(r"\r\n|\r|\n")
_HEX_ESCAPE: Final = re.compile(r"X(?:[0-9A-Fa-f]{2})+")
_SEGMENT_NAME: Final = re.compile(r"[A-Z][A-Z0-9]{2}")
# Bounds on one message (issue #14): parsing is linear in the input, and these keep
# the work per message (and so one event-loop turn) to a few milliseconds. A real
# PCD-01 ORU^R01 from a multi-parameter monitor has well under 200 segments
# (about 20 µs each to parse and interpret on a loaded 2-core dev box).
MAX_SEGMENTS: Final = 256
# Empty lines between segments are tolerated, but they count against this bound.
MAX_LINES: Final = 2 * MAX_SEGMENTS
# Timestamps outside these years are refused: a device clock there is broken, and
# year 1 or 9999 with an offset overflows on conversion to UTC.
TS_MIN_YEAR: Final = 1900
TS_MAX_YEAR: Final = 2999
_TS: Final = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


class Hl7Error(BedsideInputError, ValueError):
    """The root of the HL7 subsystem's errors; raised itself for a message that cannot
    be read as HL7 v2 (no MSH, broken delimiters, over a bound)."""


class Hl7TimeError(Hl7Error):
    """A timestamp that reads as HL7 DTM but lies outside the years we accept."""


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
    # Split on the escape character (one C-level pass) rather than walking the text
    # character by character: a field of a hostile message can be 100 kB long.
    if d.escape not in text:
        return text
    parts = text.split(d.escape)
    tail = ""
    if len(parts) % 2 == 0:  # an escape character never closed: the rest is kept as sent
        tail = d.escape + parts.pop()
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape, ".br": "\n"}
    # The sequences (parts[1::2]) are looked up with map(dict.get), C-level, and slice
    # assignment interleaves them with the literal text: a field of 85,000 escapes
    # costs a few milliseconds, not a Python loop iteration per escape. Only a field
    # with a hex or unknown sequence takes a second, Python-level pass.
    seqs = parts[1::2]
    looked_up = list(map(simple.get, seqs))
    if None in looked_up:
        parts[1::2] = [text or _rare_escape(seq, d) for text, seq in zip(looked_up, seqs, strict=True)]
    else:
        parts[1::2] = cast(list[str], looked_up)  # every one found
    return "".join(parts) + tail


def _rare_escape(seq: str, d: Delimiters) -> str:
    if _HEX_ESCAPE.fullmatch(seq):
        return bytes.fromhex(seq[1:]).decode("latin-1")
    return d.escape + seq + d.escape  # unknown escape: keep it as sent


def escape(text: str, d: Delimiters) -> str:
    """Escape `text` for a field written with delimiters `d`; CR and LF become hex
    escapes (a raw CR would end the segment, a raw LF too for a tolerant reader)."""
    if not any(ch in text for ch in (d.escape, d.field, d.component, d.subcomponent, d.repetition, "\r", "\n")):
        return text  # the common case, without building five copies
    out = text.replace(d.escape, f"{d.escape}E{d.escape}")
    for ch, code in ((d.field, "F"), (d.component, "S"), (d.subcomponent, "T"), (d.repetition, "R")):
        out = out.replace(ch, f"{d.escape}{code}{d.escape}")
    return out.replace("\r", f"{d.escape}X0D{d.escape}").replace("\n", f"{d.escape}X0A{d.escape}")


def reencode(raw: str, source: Delimiters, target: Delimiters) -> str:
    """A field as one sender wrote it (`source` delimiters, still escaped) rewritten
    with `target` delimiters: same repetitions, components and subcomponents, every
    leaf unescaped and escaped again, so no delimiter of either set can leak."""
    return target.repetition.join(
        target.component.join(
            target.subcomponent.join(escape(unescape(leaf, source), target) for leaf in comp.split(source.subcomponent))
            for comp in rep.split(source.component)
        )
        for rep in raw.split(source.repetition)
    )


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
        # Bounded splits: the cost is what lies before the wanted part, not the field.
        reps = raw.split(d.repetition, rep)
        if rep > len(reps):
            return ""
        comps = reps[rep - 1].split(d.component, comp)
        if comp > len(comps):
            return ""
        subs = comps[comp - 1].split(d.subcomponent, sub)
        return unescape(subs[sub - 1], d) if sub <= len(subs) else ""

    def components(self, seg: Segment, n: int, count: int) -> list[str]:
        """The first `count` components of SEG-n's first repetition (first subcomponent
        each, unescaped), padded with "": one split where `get` would take `count`."""
        d = self.delimiters
        comps = seg.raw(n).split(d.repetition, 1)[0].split(d.component, count)[:count]
        comps += [""] * (count - len(comps))
        return [unescape(c.split(d.subcomponent, 1)[0], d) for c in comps]

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
    pieces = _SEGMENT_BREAK.split(text, maxsplit=MAX_LINES)
    if len(pieces) > MAX_LINES and _SEGMENT_BREAK.search(pieces[-1].rstrip("\r\n")):
        raise Hl7Error(f"message has more than {MAX_LINES} lines (bound)")
    lines = [line for line in pieces if line.strip()]
    if len(lines) > MAX_SEGMENTS:
        raise Hl7Error(f"message has {len(lines)} segments, more than {MAX_SEGMENTS} (bound)")
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise Hl7Error("message does not start with an MSH segment")
    head = lines[0]
    fs = head[3]
    encoding = head[4 : head.index(fs, 4)] if fs in head[4:] else ""
    # Letters or digits as delimiters would split values and names (`8` as the
    # component separator turns "85" into two components).
    if (
        len(encoding) < 4
        or any(ch.isalnum() or ch.isspace() for ch in encoding[:4] + fs)
        or len(set(encoding + fs)) != len(encoding) + 1
    ):
        raise Hl7Error(f"MSH-2 encoding characters {encoding!r} are not four distinct delimiters")
    d = Delimiters(fs, encoding[0], encoding[1], encoding[2], encoding[3])
    segments = []
    for line in lines:
        parts = line.split(fs)
        name = parts[0]
        if not _SEGMENT_NAME.fullmatch(name):
            raise Hl7Error(f"bad segment name {name!r}")
        fields = (name, fs, *parts[1:]) if name == "MSH" else tuple(parts)
        segments.append(Segment(name, tuple(fields)))
    return Hl7Message(tuple(segments), d)


def parse_ts(text: str) -> datetime | None:
    """HL7 DTM `YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]` -> naive (no zone) or aware datetime.

    None for text that is not a DTM (ignored by the caller, as before); raises
    Hl7TimeError for a DTM outside TS_MIN_YEAR..TS_MAX_YEAR or with an offset of a
    day or more: such a time cannot be trusted, and would overflow downstream."""
    match = _TS.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if not TS_MIN_YEAR <= int(year) <= TS_MAX_YEAR:
        raise Hl7TimeError(f"timestamp {text.strip()!r} outside the years {TS_MIN_YEAR}-{TS_MAX_YEAR}")
    if zone is not None and (int(zone[1:3]) > 23 or int(zone[3:5]) > 59):
        raise Hl7TimeError(f"timestamp {text.strip()!r} has an impossible zone offset")
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
