"""IntelliVue Data Export application messages: build the host's, parse the monitor's.

Pure functions over the user data of a frame (see `intellivue_frame`): no I/O, no
clock. Everything is big-endian and bounded by its own length fields; a message
that runs past its end raises `MessageError` and is counted by the caller as a
bad frame, never trusted partially.

Fact sheet: shared/protocols/intellivue-mib.md §3-§6 and §9 (byte layouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from appliance.core.errors import BedsideInputError
from drivers.intellivue.values import (
    decode_abs_time,
    decode_float,
    encode_abs_time,
    encode_float,
)

__all__ = [
    "Abort",
    "AssocAccept",
    "AssocRefuse",
    "Attributes",
    "MdsCreate",
    "Message",
    "MessageError",
    "OtherMessage",
    "PollReply",
    "Reader",
    "ReleaseRequest",
    "ReleaseResponse",
    "RemoteError",
    "association_request",
    "build_attributes",
    "decode_abs_time",
    "decode_float",
    "encode_abs_time",
    "encode_float",
    "extended_poll",
    "mds_create_result",
    "parse_attributes",
    "parse_message",
    "release_request",
    "release_response",
    "single_poll",
]

SPPDU: Final = b"\xe1\x00\x00\x02"
ROIV, RORS, ROER, ROLRS = 1, 2, 3, 5
EVENT_REPORT, CONFIRMED_EVENT_REPORT, CONFIRMED_ACTION = 0, 1, 7
NOM_NOTI_MDS_CREAT: Final = 0x0D06
NOM_ACT_POLL_MDIB_DATA: Final = 0x0C16
NOM_ACT_POLL_MDIB_DATA_EXT: Final = 0xF13B
NOM_ATTR_TIME_PD_POLL: Final = 0xF13E
MDS_OBJECT: Final = b"\x00\x21\x00\x00\x00\x00"  # class NOM_MOC_VMS_MDS, context 0, handle 0
# Polled object codes (partition NOM_PART_OBJ).
NOM_MOC_VMO_METRIC_NU: Final = 0x0006
NOM_MOC_VMO_AL_MON: Final = 0x0036
NOM_MOC_VMS_MDS: Final = 0x0021
# ROLRS linked-id states.
RORLS_LAST: Final = 3


class MessageError(BedsideInputError, ValueError):
    """User data that does not parse within its own bounds."""


class Reader:
    """A bounded cursor: every read checks the end, so a lying length field cannot
    make the parser read another structure's bytes."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self.pos = pos
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self._end:
            raise MessageError(f"need {n} bytes at offset {self.pos}, {self.remaining} left")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def sub(self, n: int) -> Reader:
        """A reader over the next `n` bytes; this reader skips past them."""
        if n < 0 or self.pos + n > self._end:
            raise MessageError(f"length {n} at offset {self.pos} runs past the end ({self.remaining} left)")
        view = Reader(self._data, self.pos, self.pos + n)
        self.pos += n
        return view


# -- attribute lists -----------------------------------------------------------------
Attributes = dict[int, bytes]


def parse_attributes(r: Reader) -> Attributes:
    """AttributeList {count, length, AVA[]}: bounded by `length`, not by `count`."""
    r.u16()  # count: informational only, the length bounds the list
    body = r.sub(r.u16())
    attrs: Attributes = {}
    while body.remaining >= 4:
        attr_id = body.u16()
        attrs[attr_id] = body.take(body.u16())
    return attrs


def build_attributes(attrs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(a.to_bytes(2, "big") + len(v).to_bytes(2, "big") + v for a, v in attrs)
    return len(attrs).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


# -- host -> monitor -----------------------------------------------------------------
_SESSION_DATA: Final = bytes.fromhex("05 08 13 01 00 16 01 02 80 00 14 02 00 02")
_PRESENTATION_HEADER: Final = bytes.fromhex(
    "C1 DC 31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A4 80 30 80 02 01 01 06 04 52 01 00 01 30 80 06 02 51 01"
    "00 00 00 00 30 80 02 01 02 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01 30 80 06 0C 2A 86 48 CE 14 02 01 00 00 00"
    "02 01 00 00 00 00 00 00 61 80 30 80 02 01 01 A0 80 60 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03 01 00 00"
    "BE 80 28 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01 02 01 02"
)
PERIOD_NU_1SEC: Final = 0x80000000
PERIOD_RTSA: Final = 0x08000000
POLL_ENUM: Final = 0x04000000


def association_request(min_poll_period_rt: int = 0x09C4, ext_options: int = PERIOD_NU_1SEC) -> bytes:
    """CN_SPDU with MDSEUserInfoStd: client, hot start, poll profile + extension."""
    ext = ext_options.to_bytes(4, "big") + build_attributes([])
    optional = build_attributes([(0xF001, ext)])
    profile = (
        (0x80000000).to_bytes(4, "big")  # poll profile revision 0
        + min_poll_period_rt.to_bytes(4, "big")
        + (0x09C4).to_bytes(4, "big")  # max_mtu_rx
        + (0x03E8).to_bytes(4, "big")  # max_mtu_tx
        + (0xFFFFFFFF).to_bytes(4, "big")  # max_bw_tx
        + (0x60000000).to_bytes(4, "big")  # dynamic create + delete of objects
        + optional
    )
    user_info = bytes.fromhex("80000000 40000000 00000000 80000000 20000000 00000000") + build_attributes(
        [(0x0001, profile)]
    )
    body = _SESSION_DATA + _PRESENTATION_HEADER + b"\x81" + bytes((len(user_info),)) + user_info + bytes(16)
    if len(body) >= 0xFF:
        raise ValueError("association request needs a long length indicator")
    return b"\x0d" + bytes((len(body),)) + body


def _roiv_action(invoke_id: int, action: int, args: bytes) -> bytes:
    action_arg = MDS_OBJECT + bytes(4) + action.to_bytes(2, "big") + len(args).to_bytes(2, "big") + args
    roiv = invoke_id.to_bytes(2, "big") + CONFIRMED_ACTION.to_bytes(2, "big") + len(action_arg).to_bytes(2, "big")
    body = roiv + action_arg
    return SPPDU + ROIV.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def single_poll(invoke_id: int, poll_number: int, obj_code: int) -> bytes:
    args = poll_number.to_bytes(2, "big") + (1).to_bytes(2, "big") + obj_code.to_bytes(2, "big") + bytes(2)
    return _roiv_action(invoke_id, NOM_ACT_POLL_MDIB_DATA, args)


def extended_poll(invoke_id: int, poll_number: int, obj_code: int, period_rt: int | None = None) -> bytes:
    attrs = [] if period_rt is None else [(NOM_ATTR_TIME_PD_POLL, period_rt.to_bytes(4, "big"))]
    args = poll_number.to_bytes(2, "big") + (1).to_bytes(2, "big") + obj_code.to_bytes(2, "big") + bytes(2)
    return _roiv_action(invoke_id, NOM_ACT_POLL_MDIB_DATA_EXT, args + build_attributes(attrs))


def mds_create_result(invoke_id: int, managed_object: bytes, event_time: int) -> bytes:
    result = managed_object + event_time.to_bytes(4, "big") + NOM_NOTI_MDS_CREAT.to_bytes(2, "big") + bytes(2)
    rors = invoke_id.to_bytes(2, "big") + CONFIRMED_EVENT_REPORT.to_bytes(2, "big") + len(result).to_bytes(2, "big")
    body = rors + result
    return SPPDU + RORS.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


_RELEASE_TAIL: Final = bytes.fromhex("C1 16 61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00 00 00 00 00")


def release_request() -> bytes:
    return b"\x09\x18" + _RELEASE_TAIL


def release_response() -> bytes:
    return b"\x0a\x18" + _RELEASE_TAIL.replace(b"\x62\x80", b"\x63\x80")


# -- monitor -> host -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AssocAccept:
    min_poll_period_s: float | None


@dataclass(frozen=True, slots=True)
class AssocRefuse:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    pass


@dataclass(frozen=True, slots=True)
class MdsCreate:
    invoke_id: int
    managed_object: bytes
    event_time: int
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class PollReply:
    invoke_id: int
    last: bool  # False for the FIRST / middle parts of a linked reply
    poll_number: int
    rel_time: int
    abs_time: datetime | None
    obj_code: int
    # (context id, [(object handle, attributes)])
    contexts: tuple[tuple[int, tuple[tuple[int, Attributes], ...]], ...]


@dataclass(frozen=True, slots=True)
class RemoteError:
    invoke_id: int
    error_value: int


@dataclass(frozen=True, slots=True)
class OtherMessage:
    what: str


Message = (
    AssocAccept
    | AssocRefuse
    | ReleaseRequest
    | ReleaseResponse
    | Abort
    | MdsCreate
    | PollReply
    | RemoteError
    | OtherMessage
)

_POLL_PROFILE: Final = bytes.fromhex("0001 0028 80000000")


def _assoc_accept(data: bytes) -> AssocAccept:
    # The user data sits inside ASN.1 presentation wrapping whose lengths vary by
    # monitor; the poll profile AVA (id 1, length 40, revision 0) is unambiguous.
    at = data.find(_POLL_PROFILE)
    if at < 0 or at + 12 > len(data):
        return AssocAccept(None)
    return AssocAccept(int.from_bytes(data[at + 8 : at + 12], "big") / 8000)


def parse_message(data: bytes) -> Message:
    if not data:
        raise MessageError("empty user data")
    kind = data[0]
    simple: dict[int, Message] = {0x0C: AssocRefuse(), 0x09: ReleaseRequest(), 0x0A: ReleaseResponse(), 0x19: Abort()}
    if kind == 0x0E:
        return _assoc_accept(data)
    if kind in simple:
        return simple[kind]
    if data[:4] != SPPDU:
        return OtherMessage(f"unknown SPDU 0x{kind:02X}")
    r = Reader(data, 4)
    ro_type = r.u16()
    body = r.sub(r.u16())
    if ro_type == ROER:
        return RemoteError(body.u16(), body.u16())
    linked_state = 0
    if ro_type == ROLRS:
        linked_state = body.u8()
        body.u8()  # count of linked replies so far
    invoke_id = body.u16()
    command = body.u16()
    args = body.sub(body.u16())
    if ro_type == ROIV and command in (EVENT_REPORT, CONFIRMED_EVENT_REPORT):
        return _event_report(invoke_id, args)
    if ro_type in (RORS, ROLRS) and command == CONFIRMED_ACTION:
        return _poll_reply(invoke_id, args, last=ro_type == RORS or linked_state == RORLS_LAST)
    return OtherMessage(f"ro_type {ro_type} command {command}")


def _event_report(invoke_id: int, r: Reader) -> Message:
    managed_object = r.take(6)
    event_time = r.u32()
    event_type = r.u16()
    info = r.sub(r.u16())
    if event_type != NOM_NOTI_MDS_CREAT:
        return OtherMessage(f"event 0x{event_type:04X}")
    info.take(6)  # the created object's id
    return MdsCreate(invoke_id, managed_object, event_time, parse_attributes(info))


def _poll_reply(invoke_id: int, r: Reader, last: bool) -> Message:
    r.take(6)  # managed object
    action = r.u16()
    if action not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
        return OtherMessage(f"action result 0x{action:04X}")
    reply = r.sub(r.u16())
    poll_number = reply.u16()
    if action == NOM_ACT_POLL_MDIB_DATA_EXT:
        reply.u16()  # sequence number
    rel_time = reply.u32()
    abs_time = decode_abs_time(reply.take(8))
    reply.u16()  # partition
    obj_code = reply.u16()
    reply.u16()  # polled attribute group
    reply.u16()  # context count: the length bounds the list
    poll_list = reply.sub(reply.u16())
    contexts = []
    while poll_list.remaining >= 6:
        context_id = poll_list.u16()
        poll_list.u16()
        observations = poll_list.sub(poll_list.u16())
        objects = []
        while observations.remaining >= 6:
            handle = observations.u16()
            objects.append((handle, parse_attributes(observations)))
        contexts.append((context_id, tuple(objects)))
    return PollReply(invoke_id, last, poll_number, rel_time, abs_time, obj_code, tuple(contexts))
