"""IHE PCD-01 (ORU^R01) and PCD-04 (ORU^R40) content, acceptance rules and ACKs.

`interpret` reads a parsed message into numeric values and alerts and decides the
acknowledgement: reject (unsupported type, version or processing id; unreadable
message) or error (missing segments or fields, wrong data types, a PCD profile OID
that does not match the message) or accept. `build_ack` answers in the mode the
sender asked for in MSH-15 / MSH-16 (original mode AA/AE/AR; enhanced mode
application ack AA/AE/AR or commit ack CA/CE/CR; NE = none).

Fact sheet: shared/protocols/hl7-mllp.md §3-§6.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, TypeVar

from drivers.hl7.message import Delimiters, Hl7Message, Segment, escape, parse_ts, reencode

__all__ = [
    "SUPPORTED_VERSIONS",
    "PcdAlert",
    "PcdResult",
    "PcdValue",
    "Verdict",
    "ack_codes",
    "ack_message",
    "build_ack",
    "interpret",
    "ucum_of",
]

# HL7 v2 versions we read: IHE PCD-01/-04 are written for 2.6, and deployed PCD
# senders still use 2.5 / 2.5.1 (same segments and fields for what we read). Any
# other version is refused by name rather than read with the wrong field meanings.
SUPPORTED_VERSIONS: Final = ("2.5", "2.5.1", "2.6")
PCD01_OID: Final = "1.3.6.1.4.1.19376.1.6.1.1.1"
PCD04_OIDS: Final = ("1.3.6.1.4.1.19376.1.6.1.4.1", "1.3.6.1.4.1.19376.1.6.4.4.1")  # table value, TF examples
# MDC dimension codes seen in PCD messages -> UCUM (fact sheet §8 units; the Philips example for ms).
MDC_UNITS: Final = {
    262688: "%",
    264864: "/min",
    266016: "mm[Hg]",
    264928: "/min",
    262656: "1",
    264338: "ms",
    268192: "Cel",
}
_FLAG_OF_ABNORMAL: Final = {
    "INV": "invalid_measurement",
    "NAV": "unavailable",
    "QUES": "questionable_measurement",
    "CAL": "sensor_calibrating",
    "TEST": "test_data",
    "DEMO": "demo_data",
    "EARLY": "early_indication",
    "BUSY": "measurement_ongoing",
}
_PRIORITY: Final = {"PH": "high", "PM": "medium", "PL": "low"}
_KIND: Final = {"SP": "phys", "ST": "tech", "SA": "advisory"}
_ENDED_PHASES: Final = frozenset({"end", "stop", "reset", "inactivate"})
# HL7 v2 NM: optional sign, digits, optional decimal point (no exponent, no spaces
# inside, no NaN/Infinity). Python's float() accepts far more ('1_000', '1e3', 'nan').
_NM: Final = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+) *")  # ASCII digits only (\d takes ٨٥)
_NOT_FINITE: Final = re.compile(r" *[+-]?(nan|inf|infinity) *", re.IGNORECASE)


def nm_value(raw: str) -> tuple[float | None, bool]:
    """OBX-5 of an NM row -> (number, usable). A non-finite spelling (NaN, inf,
    or digits beyond a double's range) is (None, False): the row stays, flagged,
    so the gateway can tell a sender that keeps sending non-numbers. Anything
    else that is not an HL7 number raises ValueError (the message is in error)."""
    if not raw:
        return None, True
    if _NM.fullmatch(raw):
        number = float(raw)
        return (number, True) if number not in (float("inf"), float("-inf")) else (None, False)
    if _NOT_FINITE.fullmatch(raw):
        return None, False
    raise ValueError(raw)


# OBX-4 containment is MDS.VMD.CHAN.METRIC plus an alert facet: five levels. The
# bound keeps the device-tree lookups (`_inherited`) constant per row; each level
# is a small number (the fact sheet's examples stay under 6 digits).
MAX_CONTAINMENT_DEPTH: Final = 8
MAX_LEVEL_DIGITS: Final = 9
# What an ACK echoes back is capped: no sender can make us write a large ACK.
MAX_ECHO_CHARS: Final = 256
MAX_ERR_TEXT_CHARS: Final = 200
_OURS: Final = Delimiters()


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Literal["accept", "error", "reject"] = "accept"
    err_code: int = 0  # HL7 table 0357
    text: str = ""


@dataclass(frozen=True, slots=True)
class PcdValue:
    code: int
    refid: str
    value: float | None
    unit: str
    time: datetime | None
    flags: frozenset[str]
    place: tuple[int, ...] = ()  # OBX-4 containment: with the sender, code and time, the row's identity


@dataclass(frozen=True, slots=True)
class PcdAlert:
    alert_id: str
    flag: str
    active: bool
    text: str
    source: PcdValue | None  # the metric that alarmed, with its value, if numeric


@dataclass(slots=True)
class PcdResult:
    verdict: Verdict
    trigger: str = ""
    is_response: bool = False  # an ACK or other response: never acknowledged back
    processing_id: str = "P"  # MSH-11: P production, T training, D debugging
    sender: str = ""  # MSH-3 | MSH-4
    patient_ids: tuple[str, ...] = ()  # PID-3 CX.1 of each repetition
    location: tuple[str, str, str] = ("", "", "")  # PV1-3 point of care, room, bed
    values: list[PcdValue] = field(default_factory=list)
    alerts: list[PcdAlert] = field(default_factory=list)


def ucum_of(msg: Hl7Message, obx: Segment) -> str:
    code, text, system = msg.components(obx, 6, 3)
    if system == "MDC" and code.isdigit():
        return MDC_UNITS.get(int(code), text or code)
    unit = code or text
    return re.sub(r"\{[^}]*\}", "", unit) if system == "UCUM" else unit  # {beat}/min -> /min


def _reject(code: int, text: str) -> PcdResult:
    return PcdResult(Verdict("reject", code, text))


def _error(code: int, text: str) -> PcdResult:
    return PcdResult(Verdict("error", code, text))


def _header_refusal(msg: Hl7Message, kind: str, trigger: str) -> PcdResult | None:
    """What MSH alone makes us refuse, in the order a sender should fix it."""
    msh = msg.msh
    # Required MSH fields first: without them the message cannot be routed or answered
    # (table 0357 code 101, required field missing), so it is rejected, not in error.
    if not kind:
        return _reject(101, "MSH-9 message type missing")
    if not msg.get(msh, 10):
        return _reject(101, "MSH-10 message control id missing")
    if (kind, trigger) not in (("ORU", "R01"), ("ORU", "R40")):
        return _reject(200, f"unsupported message type {kind}^{trigger}")
    version = msg.get(msh, 12, 1)
    if version not in SUPPORTED_VERSIONS:
        return _reject(203, f"unsupported version {version[:20]!r} (supported: {', '.join(SUPPORTED_VERSIONS)})")
    if msg.get(msh, 11, 1) not in ("P", "D", "T"):
        return _reject(202, f"unsupported processing id {msg.get(msh, 11, 1)[:20]!r}")
    if msg.get(msh, 21, 2) == "IHE PCD":  # it claims an IHE PCD profile: the OID must be that profile's
        oid = msg.get(msh, 21, 3)
        if oid not in ((PCD01_OID,) if trigger == "R01" else PCD04_OIDS):
            return _error(207, f"MSH-21 profile OID {oid!r} does not match ORU^{trigger}")
    return None


def interpret(msg: Hl7Message) -> PcdResult:
    msh = msg.msh
    kind, trigger = msg.get(msh, 9, 1), msg.get(msh, 9, 2)
    if msg.first("MSA") is not None:
        msa = msg.first("MSA")
        code, acked = msg.get(msa, 1), msg.get(msa, 2)
        return PcdResult(Verdict("accept", 0, f"{kind}^{trigger} {code} for {acked}"), trigger, is_response=True)
    refused = _header_refusal(msg, kind, trigger)
    if refused is not None:
        return refused
    if msg.first("OBR") is None:
        return _error(100, "OBR segment missing")
    if msg.first("OBX") is None:
        return _error(101, "no OBX segment")
    result = PcdResult(Verdict(), trigger, processing_id=msg.get(msh, 11, 1))
    _who(msg, result)
    try:
        rows = _rows(msg)
    except ValueError as exc:
        return _error(102, str(exc))
    if trigger == "R01":
        result.values = [v for _, _, v in rows if v is not None]
    else:
        result.alerts = _alerts(msg, rows)
    return result


# PID-3 repetitions read for the patient check; more are ignored (a bound, not a refusal).
MAX_PATIENT_IDS: Final = 8
MAX_ID_CHARS: Final = 64  # each id / location part: a hostile 60 KB PID-3 must not ride on every reading


def _who(msg: Hl7Message, result: PcdResult) -> None:
    """Sender, patient ids (PID-3) and location (PV1-3): what the gateway checks
    against its own pairing of the device (appliance/identity.py)."""
    result.sender = f"{msg.msh.raw(3)}|{msg.msh.raw(4)}"
    pid = msg.first("PID")
    if pid is not None:
        reps = pid.raw(3).split(msg.delimiters.repetition, MAX_PATIENT_IDS)[:MAX_PATIENT_IDS]
        ids = (msg.get(pid, 3, 1, n + 1) for n in range(len(reps)))
        result.patient_ids = tuple(i[:MAX_ID_CHARS] for i in ids if i and i != '""')
    pv1 = msg.first("PV1")
    if pv1 is not None:
        unit, room, bed = msg.components(pv1, 3, 3)
        result.location = (unit[:MAX_ID_CHARS], room[:MAX_ID_CHARS], bed[:MAX_ID_CHARS])


Row = tuple[Segment, tuple[int, ...], PcdValue | None]


def _containment(text: str, set_id: str) -> tuple[int, ...]:
    if text.count(".") >= MAX_CONTAINMENT_DEPTH:
        raise ValueError(f"OBX {set_id}: OBX-4 deeper than {MAX_CONTAINMENT_DEPTH} levels (bound)")
    parts = [p for p in text.split(".") if p.isdigit()]
    if any(len(p) > MAX_LEVEL_DIGITS for p in parts):
        raise ValueError(f"OBX {set_id}: OBX-4 level longer than {MAX_LEVEL_DIGITS} digits (bound)")
    return tuple(int(p) for p in parts)


def _rows(msg: Hl7Message) -> list[Row]:
    """Each OBX with its containment and, for numeric rows, the value (time inherited)."""
    default_time = parse_ts(msg.get(msg.msh, 7))
    times: dict[tuple[int, ...], datetime] = {}
    equipment: dict[tuple[int, ...], str] = {}
    rows: list[Row] = []
    for seg in msg.segments:
        if seg.name == "OBR":
            default_time = parse_ts(msg.get(seg, 7)) or default_time
            times.clear()
            equipment.clear()
        if seg.name != "OBX":
            continue
        set_id = msg.get(seg, 1)
        code_text, refid = msg.components(seg, 3, 2)
        if not code_text.isdigit():
            raise ValueError(f"OBX {set_id}: OBX-3 {code_text!r} is not an MDC code")
        where = _containment(msg.get(seg, 4), set_id[:20])
        own_time = parse_ts(msg.get(seg, 14))
        if own_time is not None:
            times[where] = own_time
        own_equipment = "^".join(filter(None, msg.components(seg, 18, 4)))
        if own_equipment:
            equipment[where] = own_equipment
        status = msg.get(seg, 11)
        value: PcdValue | None = None
        if msg.get(seg, 2) == "NM" and status not in ("D", "W"):  # deleted / posted in error: not a value
            number, flags = _numeric(msg, seg, set_id, status)
            source = own_equipment or _inherited(equipment, where)
            if source:
                flags.add(f"equipment:{source}")  # OBX-18, inherited from the device rows above
            when = own_time or _inherited(times, where) or default_time
            if status == "C":
                flags.add("correction")  # replaces the row with the same identity (codec: `corrects_origin:`)
            value = PcdValue(int(code_text), refid, number, ucum_of(msg, seg), when, frozenset(flags), where)
        rows.append((seg, where, value))
    return rows


def _numeric(msg: Hl7Message, seg: Segment, set_id: str, status: str) -> tuple[float | None, set[str]]:
    """An NM row's value and the flags its own fields give (OBX-5, OBX-8, OBX-11)."""
    raw = msg.get(seg, 5)
    whole = seg.raw(5)  # an NM is one plain value: no components, repetitions or escapes
    if any(ch in whole for ch in msg.delimiters.encoding):
        raise ValueError(f"OBX {set_id}: NM value {whole[:40]!r} is not a single number")
    try:
        number, usable = nm_value(raw)
    except ValueError:
        raise ValueError(f"OBX {set_id}: NM value {raw!r} is not a number") from None
    flags = {_FLAG_OF_ABNORMAL[f] for f in msg.repetitions(seg, 8) if f in _FLAG_OF_ABNORMAL}
    if not usable:
        flags.add("non_finite")
    if status == "X":
        flags.add("result_status_x")  # "cannot be obtained": the checklist maps it to invalid
    if number is None and usable:
        flags.add("missing")
    return number, flags


_T = TypeVar("_T")


def _inherited(by_place: dict[tuple[int, ...], _T], where: tuple[int, ...]) -> _T | None:
    """The value of the nearest enclosing device row (1.2.1.0, then 1.2.0.0, then 1.0.0.0)."""
    for depth in range(len(where) - 1, 0, -1):
        parent = where[:depth] + (0,) * (len(where) - depth)
        if parent in by_place:
            return by_place[parent]
    return None


def _alerts(msg: Hl7Message, rows: list[Row]) -> list[PcdAlert]:
    obr = msg.first("OBR")
    group_id = msg.get(obr, 29, 2) or msg.get(obr, 3) or msg.get(obr, 2)
    groups: dict[tuple[int, ...], dict[int, tuple[Segment, PcdValue | None]]] = {}
    for seg, where, value in rows:
        if len(where) >= 2:
            groups.setdefault(where[:-1], {})[where[-1]] = (seg, value)
    alerts = []
    for instance, facets in groups.items():
        if 1 not in facets:
            continue
        event_seg = facets[1][0]
        event_code = msg.get(event_seg, 3, 1)
        if event_code == "196616" and msg.get(event_seg, 5, 1).isdigit():
            event_code = msg.get(event_seg, 5, 1)  # MDC_EVT_ALARM: the specific event is in OBX-5
        text = msg.get(event_seg, 5, 9) or msg.get(event_seg, 5, 2) or msg.get(event_seg, 5, 1)
        marks = msg.repetitions(event_seg, 8)

        def facet(n: int, facets: dict[int, tuple[Segment, PcdValue | None]] = facets) -> str:
            return msg.get(facets[n][0], 5) if n in facets else ""

        priority = _PRIORITY.get(facet(6)) or next((_PRIORITY[m] for m in marks if m in _PRIORITY), "")
        kind = _KIND.get(facet(7)) or next((_KIND[m] for m in marks if m in _KIND), "phys")
        source = facets[2][1] if 2 in facets else None
        source_code = msg.get(facets[2][0], 3, 1) if 2 in facets else "0"
        if source_code == "68480":  # MDC_ATTR_ALERT_SOURCE: the source device's code is the value
            source_code = msg.get(facets[2][0], 5, 1) or source_code
        state, phase = facet(4), facet(3)
        active = state in ("active", "latched") if state else phase not in _ENDED_PHASES
        grade = f"{priority}_" if priority else ""
        flag = f"alarm_{grade}{kind}_{event_code}_{source_code}"
        alert_id = f"{group_id}/{'.'.join(map(str, instance))}"
        alerts.append(PcdAlert(alert_id, flag, active, text, source))
    return alerts


def _ack_mode(value: str) -> str:
    return value if value in ("", "AL", "NE", "ER", "SU") else "AL"


def ack_codes(msg: Hl7Message | None, verdict: Verdict) -> list[str]:
    """The MSA-1 codes to send, in order: none (NE), one, or in enhanced mode with
    both MSH-15 and MSH-16 asking, the commit ACK and then the application ACK.

    A message not committed (CE / CR) gets no application ACK after it: the commit
    answer already tells the sender to fix or resend it."""
    ok = verdict.outcome == "accept"
    suffix = {"accept": "A", "error": "E", "reject": "R"}[verdict.outcome]
    # A value outside HL7 table 0155 counts as AL: telling a confused sender beats silence.
    accept_mode = _ack_mode(msg.get(msg.msh, 15)) if msg else ""
    app_mode = _ack_mode(msg.get(msg.msh, 16)) if msg else ""

    def wanted(mode: str) -> bool:
        return mode == "AL" or (mode == "ER" and not ok) or (mode == "SU" and ok)

    if not accept_mode and not app_mode:
        return ["A" + suffix]  # original mode
    codes = ["C" + suffix] if wanted(accept_mode) else []
    if wanted(app_mode) and (ok or not codes):
        codes.append("A" + suffix)
    return codes


def build_ack(
    msg: Hl7Message | None, verdict: Verdict, now: datetime, control_id: str, app: str = "BEDSIDE_GW"
) -> bytes | None:
    """The first ACK the sender asked for, or None when MSH-15/16 say never (NE)."""
    codes = ack_codes(msg, verdict)
    return ack_message(msg, codes[0], verdict, now, control_id, app=app) if codes else None


def ack_message(
    msg: Hl7Message | None, code: str, verdict: Verdict, now: datetime, control_id: str, *, app: str = "BEDSIDE_GW"
) -> bytes:
    """One ACK (MSA-1 `code`) to `msg`; an ERR segment says why when it is not an accept."""
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")

    def echo(n: int) -> str:
        # The sender's field rewritten with our delimiters: a sender whose field
        # separator is '#' cannot put a '|' (or a CR) into our ACK.
        return reencode(msg.msh.raw(n)[:MAX_ECHO_CHARS], msg.delimiters, _OURS) if msg else ""

    trigger = escape(msg.get(msg.msh, 9, 2)[:MAX_ECHO_CHARS], _OURS) if msg else ""
    segments = [
        f"MSH|^~\\&|{escape(app, _OURS)}||{echo(3)}|{echo(4)}|{stamp}||ACK^{trigger}^ACK|{control_id}|P|2.6",
        f"MSA|{code}|{echo(10)}",
    ]
    if verdict.outcome != "accept":
        text = escape(verdict.text[:MAX_ERR_TEXT_CHARS], _OURS)
        segments.append(f"ERR|||{verdict.err_code}^{text}^HL70357|E")
    return ("\r".join(segments) + "\r").encode("utf-8")
