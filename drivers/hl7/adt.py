"""HL7 v2 ADT (admit, transfer, discharge) in: the hospital's bed census feed.

`read_adt` reads a parsed message into an `AdtEvent` (trigger, patient
identifiers from PID-3, location PV1-3 and prior location PV1-6, visit PV1-19,
consent from CON-11) or raises `AdtRefused` with the HL7 error code and one line
why. `AdtCodec` is the MLLP side: the same framing, bounds, resend memory and
ACK modes as the device receiver (`drivers.hl7.codec.Hl7Codec`, which it
extends), but every accepted message is handed to `on_adt`, which returns why
the census refuses it ("" = taken; an A03 for a patient never admitted is an
error, AE 204 with that text) and the sender's ACK says so. `adt_listener` builds
the device listener (drivers/hl7/listener.py) speaking it. Nothing here knows beds or patients; it emits no
readings.

Deliberately not read: A04/A05/A06/A07 (registration, pre-admit, class
changes), merges (A18/A34/A40), A12 cancel transfer; they are refused by name
(AR, 200) so the interface engine's log shows what this box does not take.

Pure apart from the codec's output buffer; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.message import Hl7Error, Hl7Message, parse, parse_ts
from drivers.hl7.pcd import MAX_ID_CHARS, MAX_PATIENT_IDS, SUPPORTED_VERSIONS, Verdict
from drivers.hl7.seen import message_keys

if TYPE_CHECKING:
    from drivers.hl7.listener import Hl7Listener

__all__ = ["ADT_TRIGGERS", "AdtCodec", "AdtEvent", "AdtRefused", "adt_listener", "read_adt"]

# The triggers the census takes (issue 21): admit, transfer, discharge, update,
# cancel admit, cancel discharge.
ADT_TRIGGERS: Final = ("A01", "A02", "A03", "A08", "A11", "A13")
# CON-11 (HL7 table 0498) -> the gateway's consent: A active, L limited: granted;
# R refused, X rescinded: withheld. P pending and B bypassed say nothing (no change).
CONSENT_OF_STATUS: Final = {"A": "granted", "L": "granted", "R": "withheld", "X": "withheld"}


class AdtRefused(Hl7Error):
    """A message the census cannot take as it is (the ACK carries code and text)."""

    def __init__(self, outcome: Literal["error", "reject"], code: int, text: str) -> None:
        super().__init__(text)
        self.verdict = Verdict(outcome, code, text)


@dataclass(frozen=True, slots=True)
class AdtEvent:
    trigger: str  # MSH-9.2 (EVN-1 when MSH-9.2 is empty)
    patient_ids: tuple[str, ...]  # PID-3 CX.1 of each repetition, the first is the primary id
    location: tuple[str, str, str] = ("", "", "")  # PV1-3 point of care, room, bed
    prior_location: tuple[str, str, str] = ("", "", "")  # PV1-6 (A02)
    visit: str = ""  # PV1-19 visit number
    consent: str = ""  # "granted" | "withheld" | "" (no CON, or a status that says nothing)
    recorded: datetime | None = None  # EVN-2, else MSH-7
    control_id: str = ""  # MSH-10, for the events and logs

    @property
    def patient_id(self) -> str:
        return self.patient_ids[0]


def _location(msg: Hl7Message, n: int) -> tuple[str, str, str]:
    pv1 = msg.first("PV1")
    if pv1 is None:
        return ("", "", "")
    unit, room, bed = msg.components(pv1, n, 3)
    return (unit[:MAX_ID_CHARS], room[:MAX_ID_CHARS], bed[:MAX_ID_CHARS])


def _patient_ids(msg: Hl7Message) -> tuple[str, ...]:
    pid = msg.first("PID")
    if pid is None:
        raise AdtRefused("error", 100, "PID segment missing")
    reps = pid.raw(3).split(msg.delimiters.repetition, MAX_PATIENT_IDS)[:MAX_PATIENT_IDS]
    ids = [msg.get(pid, 3, 1, n + 1)[:MAX_ID_CHARS] for n in range(len(reps))]
    ids = [i for i in ids if i and i != '""']
    if not ids:
        raise AdtRefused("error", 101, "PID-3 patient identifier missing")
    return tuple(dict.fromkeys(ids))  # in order, once each


def _consent(msg: Hl7Message) -> str:
    states = {CONSENT_OF_STATUS.get(msg.get(con, 11, 1).upper(), "") for con in msg.all("CON")}
    states.discard("")
    if len(states) > 1:
        raise AdtRefused("error", 207, "CON segments disagree (consent both granted and withheld)")
    return states.pop() if states else ""


def read_adt(msg: Hl7Message) -> AdtEvent:
    """The census event of an ADT message; AdtRefused for what the census cannot take."""
    msh = msg.msh
    kind, trigger = msg.get(msh, 9, 1), msg.get(msh, 9, 2)
    if not kind:
        raise AdtRefused("reject", 101, "MSH-9 message type missing")
    if not msg.get(msh, 10):
        raise AdtRefused("reject", 101, "MSH-10 message control id missing")
    trigger = trigger or msg.get(msg.first("EVN"), 1)
    if kind != "ADT" or trigger not in ADT_TRIGGERS:
        shown = f"{kind}^{trigger}"[:40]
        raise AdtRefused("reject", 200, f"unsupported message type {shown} (census takes ADT^{'/'.join(ADT_TRIGGERS)})")
    version = msg.get(msh, 12, 1)
    if version not in (*SUPPORTED_VERSIONS, "2.3", "2.3.1", "2.4"):  # ADT feeds are often older than PCD
        raise AdtRefused("reject", 203, f"unsupported version {version[:20]!r}")
    location = _location(msg, 3)
    if trigger in ("A01", "A02", "A13") and not location[2]:
        raise AdtRefused("error", 101, f"ADT^{trigger} without a bed (PV1-3.3)")
    try:
        recorded = parse_ts(msg.get(msg.first("EVN"), 2)) or parse_ts(msg.get(msh, 7))
    except Hl7Error:
        recorded = None  # a bad time is not a reason to lose a bed move; the census keeps arrival order
    pv1 = msg.first("PV1")
    return AdtEvent(
        trigger=trigger,
        patient_ids=_patient_ids(msg),
        location=location,
        prior_location=_location(msg, 6),
        visit=msg.get(pv1, 19)[:MAX_ID_CHARS],
        consent=_consent(msg),
        recorded=recorded,
        control_id=msg.get(msh, 10)[:MAX_ID_CHARS],
    )


class AdtCodec(Hl7Codec):
    """MLLP in, ACKs out; each accepted ADT goes to `on_adt`, whose verdict is ACKed."""

    def __init__(
        self,
        device_id: str,
        clock: Clock,
        *,
        on_adt: Callable[[AdtEvent], str],
        sequence: Iterator[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(device_id, clock, sequence=sequence, **kwargs)
        self._on_adt = on_adt
        self.events: int = 0  # ADT events the census took

    def _message(self, block: bytes) -> list[DeviceEvent]:
        msg: Hl7Message | None
        try:
            msg = parse(block)
        except Hl7Error as exc:
            msg = self._msh_only(block)
            return self._refuse(msg, Verdict("reject", 100, str(exc)))
        if msg.first("MSA") is not None:
            return []  # a response sent to us: read, never answered
        try:
            event = read_adt(msg)
        except AdtRefused as exc:
            return self._refuse(msg, exc.verdict)
        body = block[min((i for i in (block.find(b"\r"), block.find(b"\n")) if i >= 0), default=0) :]
        keys = message_keys(f"{msg.msh.raw(3)}|{msg.msh.raw(4)}", msg.msh.raw(10), body)
        if not self._seen.first_time_keys(*keys):  # the sender's retry after a lost ACK: ACKed, used once
            self.duplicates += 1
            self._answer(msg, Verdict())
            return []
        if msg.get(msg.msh, 11, 1) != "P":  # training / debugging: never moves a real patient
            self._answer(msg, Verdict())
            self.stats.frames_ok += 1
            return self._training(msg.get(msg.msh, 11, 1))
        refusal = self._on_adt(event)
        verdict = Verdict("error", 204, refusal) if refusal else Verdict()  # 204: unknown key identifier
        if refusal:
            return self._refuse(msg, verdict)
        self._answer(msg, verdict)
        self.stats.frames_ok += 1
        self.events += 1
        return []

    def _refuse(self, msg: Hl7Message | None, verdict: Verdict) -> list[DeviceEvent]:
        self._answer(msg, verdict)
        self._refused(f"{verdict.outcome} ({verdict.err_code}): {verdict.text}")
        return []


def adt_listener(
    device_id: str,
    port: str,
    *,
    tls: tuple[str, str, str] | None,
    on_adt: Callable[[AdtEvent], str],
    emit: Callable[[DeviceEvent], None],
    clock: Clock,
) -> Hl7Listener:
    """A listener on `port` (tcp:// or tls://HOST:PORT) speaking ADT to `on_adt`; `tls` =
    (CA, certificate, key) for tls://. LinkSetupError: one line naming the key or file."""
    import functools
    import ssl

    from drivers.address import parse_listen
    from drivers.family import LinkSetupError
    from drivers.hl7.listener import Hl7Listener, ListenerTlsError, server_context

    try:
        listen = parse_listen(port)
    except ValueError as exc:
        raise LinkSetupError(str(exc)) from None
    if listen is None:
        raise LinkSetupError(f"{port!r} is not tcp://HOST:PORT or tls://HOST:PORT")
    ctx = None
    if listen.tls:
        if tls is None:
            raise LinkSetupError("a tls:// listener needs its CA, certificate and key")
        try:
            ctx = server_context(*tls)
        except ListenerTlsError as exc:
            raise LinkSetupError(str(exc)) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise LinkSetupError(f"cannot load listener TLS material ({tls[1]}, {tls[0]}): {exc}") from None
    codec = functools.partial(AdtCodec, on_adt=on_adt)
    return Hl7Listener(device_id, listen, emit, ctx, clock=clock, codec=codec)
