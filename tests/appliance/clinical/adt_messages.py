"""ADT messages for the census tests (HL7 v2.5.1, as interface engines send them)."""

from __future__ import annotations

from drivers.hl7.adt import AdtEvent, read_adt
from drivers.hl7.message import parse


def adt(
    trigger: str,
    pid: str,
    bed: str = "",
    *,
    prior: str = "",
    control_id: str = "",
    con: str = "",
    processing: str = "P",
    version: str = "2.5.1",
) -> bytes:
    """An ADT^<trigger>; `pid` is PID-3 as written (repetitions with ~), `bed` is
    PV1-3 `unit^room^bed`, `con` a CON-11 status (empty: no CON segment)."""
    cid = control_id or f"{trigger}-{pid}-{bed}".replace("^", ".").replace("~", ".")
    segments = [
        f"MSH|^~\\&|ADT_ENGINE|HOSP|BEDSIDE|ICU|20260101120000||ADT^{trigger}^ADT_A01|{cid}|{processing}|{version}",
        f"EVN|{trigger}|20260101120000",
        f"PID|||{pid}||Doe^Jane",
        f"PV1||I|{bed}|||{prior}|||||||||||||V-{pid.split('^', maxsplit=1)[0]}",
    ]
    if con:
        segments.append(f"CON|1|TELEMETRY|||||||||{con}")
    return ("\r".join(segments) + "\r").encode()


def event(trigger: str, pid: str, bed: str = "", **kw: str) -> AdtEvent:
    return read_adt(parse(adt(trigger, pid, bed, **kw)))
