"""A Philips IntelliVue monitor's end of MIB/RS-232 Data Export (the device side).

`MonitorSim` is sans-IO: host bytes in (`feed`), monitor bytes out. It accepts an
association, announces its MDS with a create event, and answers extended polls
for numerics (as a linked reply, the way real monitors split long replies) and
alerts from a vitals scenario, single polls (keep-alives) and release. It can
instead replay a recorded monitor -> host capture: the capture's association
response and MDS create, then one recorded poll reply per poll.

Byte layouts: shared/protocols/intellivue-mib.md §4-§9. Alert codes are the
simulator's own (the gateway reads priority and source, not the code).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from drivers.intellivue import wire
from drivers.intellivue.frame import FrameDecoder, encode_frame
from hil.scenarios import Vitals

__all__ = ["MonitorSim", "MonitorState", "load_capture"]

RT_PER_S: Final = 8000
NAN: Final = 0x007FFFFF
INVALID: Final = 0x8000
HI_PRI_P_AL, MED_PRI_P_AL, MED_PRI_T_AL = 0x0400, 0x0200, 0x0002

# (handle, label, [(physio id, unit code, decimals)], value picker)
Channel = tuple[int, int, tuple[tuple[int, int, int], ...], Callable[[Vitals, float], tuple[float, ...] | None]]


def _nbp(v: Vitals, t: float) -> tuple[float, ...]:
    return (118.0 + round(t / 60) % 5, 76.0, 90.0)


def _abp(v: Vitals, t: float) -> tuple[float, ...]:
    return (124.0 + (v.pulse - 72) / 3, 71.0, 89.0)


CHANNELS: Final[tuple[Channel, ...]] = (
    (0x0101, 0x00024182, ((0x4182, 0x0AA0, 0),), lambda v, t: (v.pulse,)),
    (0x0102, 0x00024BB8, ((0x4BB8, 0x0220, 0),), lambda v, t: None if v.sensor_off else (v.spo2,)),
    (0x0103, 0x00024822, ((0x4822, 0x0AA0, 0),), lambda v, t: None if v.sensor_off else (v.pulse,)),
    (0x0104, 0x00024BB0, ((0x4BB0, 0x0200, 2),), lambda v, t: None if v.sensor_off else (v.pi,)),
    (0x0105, 0x00024A04, ((0x4A05, 0x0F20, 0), (0x4A06, 0x0F20, 0), (0x4A07, 0x0F20, 0)), _nbp),
    (0x0106, 0x00024A14, ((0x4A15, 0x0F20, 0), (0x4A16, 0x0F20, 0), (0x4A17, 0x0F20, 0)), _abp),
    (0x0107, 0x0002500A, ((0x500A, 0x0AE0, 0),), lambda v, t: (16.0,)),
    (0x0108, 0x00024B48, ((0x4B48, 0x17A0, 1),), lambda v, t: (36.9,)),
    (0x0109, 0x000250AC, ((0x50B0, 0x0F20, 0),), lambda v, t: (38.0,)),
)
LABEL_TEXT: Final = {0x0101: "HR", 0x0102: "SpO\u2082", 0x0103: "Pulse", 0x0104: "Perf", 0x0105: "NBP"}


class MonitorState(enum.Enum):
    IDLE = "idle"
    ASSOCIATED = "associated"  # accepted, MDS create sent, waiting for its result
    POLLABLE = "pollable"


def load_capture(path: str | Path) -> tuple[bytes, bytes, list[list[bytes]]]:
    """(association response, MDS create, poll reply groups) from a monitor -> host capture."""
    decoder = FrameDecoder()
    payloads = decoder.feed(Path(path).read_bytes())
    accept = next(p for p in payloads if p[:1] == b"\x0e")
    create = next(p for p in payloads if isinstance(wire.parse_message(p), wire.MdsCreate))
    groups: list[list[bytes]] = []
    current: list[bytes] = []
    for payload in payloads:
        message = wire.parse_message(payload)
        if isinstance(message, wire.PollReply):
            current.append(payload)
            if payload[4:6] == wire.RORS.to_bytes(2, "big"):  # the final part of one reply
                groups.append(current)
                current = []
    return accept, create, groups


def _text(text: str) -> bytes:
    raw = text.encode("utf-16-be") + b"\x00\x00"
    return len(raw).to_bytes(2, "big") + raw


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


@dataclass(slots=True)
class _Replay:
    accept: bytes
    create: bytes
    groups: list[list[bytes]]
    next_group: int = 0


class MonitorSim:
    def __init__(self, vitals: Callable[[float], Vitals], wall_clock: Callable[[], datetime]) -> None:
        self.vitals = vitals
        self.wall_clock = wall_clock
        self.state = MonitorState.IDLE
        self.frames_in = FrameDecoder()
        self.polls_answered = 0
        self.associations = 0
        self.releases = 0
        self._t = 0.0
        self._labels_sent = False
        self._replay: _Replay | None = None

    def replay(self, path: str | Path) -> None:
        self._replay = _Replay(*load_capture(path))

    def poll(self, t: float) -> bytes:
        return b""  # the monitor only ever answers

    def reboot(self) -> None:
        """Power-cycle: the association and the host's half-sent bytes are forgotten."""
        self.state = MonitorState.IDLE
        self.frames_in = FrameDecoder()

    def feed(self, data: bytes, t: float) -> bytes:
        self._t = t
        out = bytearray()
        for payload in self.frames_in.feed(data):
            for reply in self._handle(payload):
                out += encode_frame(reply)
        return bytes(out)

    # -- host requests ---------------------------------------------------------------
    def _handle(self, payload: bytes) -> list[bytes]:
        kind = payload[0]
        if kind == 0x0D:  # association request: a re-association resets the session
            self.state, self._labels_sent = MonitorState.ASSOCIATED, False
            self.associations += 1
            if self._replay is not None:
                return [self._replay.accept, self._replay.create]
            return [self._accept(), self._mds_create()]
        if kind == 0x09:
            self.state = MonitorState.IDLE
            self.releases += 1
            return [wire.release_response()]
        if self.state is MonitorState.IDLE or payload[:4] != wire.SPPDU:
            return []  # no association: a real monitor ignores polls
        r = wire.Reader(payload, 4)
        ro_type, _length = r.u16(), r.u16()
        invoke_id, command, _ = r.u16(), r.u16(), r.u16()
        if ro_type == wire.RORS and command == wire.CONFIRMED_EVENT_REPORT:
            self.state = MonitorState.POLLABLE  # the MDS create result
            return []
        if ro_type != wire.ROIV or command != wire.CONFIRMED_ACTION or self.state is not MonitorState.POLLABLE:
            return []
        r.take(10)  # managed object + scope
        action = r.u16()
        r.u16()
        poll_number, _partition, obj_code = r.u16(), r.u16(), r.u16()
        self.polls_answered += 1
        if action == wire.NOM_ACT_POLL_MDIB_DATA:
            return [self._reply(wire.RORS, invoke_id, poll_number, obj_code, [], extended=False)]
        if self._replay is not None and obj_code == wire.NOM_MOC_VMO_METRIC_NU:
            return self._replayed()
        if obj_code == wire.NOM_MOC_VMO_AL_MON:
            return [self._reply(wire.RORS, invoke_id, poll_number, obj_code, [self._alerts()])]
        if obj_code != wire.NOM_MOC_VMO_METRIC_NU:
            return [self._reply(wire.RORS, invoke_id, poll_number, obj_code, [])]
        objects = self._numerics()
        half = len(objects) // 2
        self._labels_sent = True
        return [
            self._reply(wire.ROLRS, invoke_id, poll_number, obj_code, objects[:half], linked=(1, 1)),
            self._reply(wire.ROLRS, invoke_id, poll_number, obj_code, objects[half:], linked=(3, 2)),
            self._reply(wire.RORS, invoke_id, poll_number, obj_code, []),
        ]

    def _replayed(self) -> list[bytes]:
        assert self._replay is not None
        replay = self._replay
        group = replay.groups[replay.next_group % len(replay.groups)]
        replay.next_group += 1
        return group

    # -- monitor messages ----------------------------------------------------------
    def _rel_time(self) -> int:
        return (0x00100000 + int(self._t * RT_PER_S)) & 0xFFFFFFFF

    def _accept(self) -> bytes:
        profile = (0x80000000).to_bytes(4, "big") + (4000).to_bytes(4, "big") + bytes.fromhex("000003e4000003e4")
        profile += bytes.fromhex("ffffffff 60000000") + wire.build_attributes([])
        user_info = bytes.fromhex("80000000 40000000 00000000 00800000 20000000 00000000")
        user_info += wire.build_attributes([(0x0001, profile)])
        body = bytes.fromhex("05 08 13 01 00 16 01 02 80 00 14 02 00 02 c1 be") + b"\x81" + bytes((len(user_info),))
        body += user_info + bytes(16)
        return b"\x0e" + bytes((len(body),)) + body

    def _mds_create(self) -> bytes:
        attrs = wire.build_attributes(
            [
                (0x0928, _u16(8) + b"Philips\x00" + _u16(6) + b"MX800\x00"),  # NOM_ATTR_ID_MODEL
                (0x0987, wire.encode_abs_time(self.wall_clock())),  # NOM_ATTR_TIME_ABS
                (0x098F, self._rel_time().to_bytes(4, "big")),  # NOM_ATTR_TIME_REL
                (0x091E, _text("BED-SIM")),
            ]
        )
        info = wire.MDS_OBJECT + attrs
        arg = wire.MDS_OBJECT + self._rel_time().to_bytes(4, "big") + _u16(wire.NOM_NOTI_MDS_CREAT)
        arg += _u16(len(info)) + info
        roiv = _u16(1) + _u16(wire.CONFIRMED_EVENT_REPORT) + _u16(len(arg)) + arg
        return wire.SPPDU + _u16(wire.ROIV) + _u16(len(roiv)) + roiv

    def _numerics(self) -> list[tuple[int, bytes]]:
        vitals = self.vitals(self._t)
        objects = []
        for handle, label, parts, pick in CHANNELS:
            values = pick(vitals, self._t)
            observed = []
            for i, (physio, unit, decimals) in enumerate(parts):
                if values is None:
                    state, raw = INVALID, NAN
                else:
                    state, raw = 0, wire.encode_float(values[i], decimals)
                observed.append(_u16(physio) + _u16(state) + _u16(unit) + raw.to_bytes(4, "big"))
            attrs: list[tuple[int, bytes]] = []
            if not self._labels_sent:  # static attributes only in the first reply
                attrs.append((0x0924, label.to_bytes(4, "big")))
                attrs.append((0x0927, _text(LABEL_TEXT.get(handle, ""))))
            if len(observed) == 1:
                attrs.append((0x0950, observed[0]))
            else:
                body = b"".join(observed)
                attrs.append((0x094B, _u16(len(observed)) + _u16(len(body)) + body))
            objects.append((handle, wire.build_attributes(attrs)))
        return objects

    def _alerts(self) -> tuple[int, bytes]:
        v = self.vitals(self._t)
        entries = []
        if v.sensor_off:
            entries.append((0x4BB8, 0x0101, MED_PRI_T_AL, "SpO2 NO SENSOR"))
        elif v.spo2 < 85:
            entries.append((0x4BB8, 0x0002, HI_PRI_P_AL, "**Desat"))
        elif v.spo2 < 90:
            entries.append((0x4BB8, 0x0003, MED_PRI_P_AL, "*SpO2 Low"))
        if v.pulse > 120:
            entries.append((0x4182, 0x0004, MED_PRI_P_AL, "*HR High"))
        physiological = [e for e in entries if e[2] & 0x0700]
        technical = [e for e in entries if not e[2] & 0x0700]
        return 0x0200, wire.build_attributes([(0x0902, _alarm_list(physiological)), (0x0904, _alarm_list(technical))])

    def _reply(
        self,
        ro_type: int,
        invoke_id: int,
        poll_number: int,
        obj_code: int,
        objects: list[tuple[int, bytes]],
        *,
        extended: bool = True,
        linked: tuple[int, int] | None = None,
    ) -> bytes:
        observations = b"".join(_u16(h) + attrs for h, attrs in objects)
        context = _u16(0) + _u16(len(objects)) + _u16(len(observations)) + observations
        poll_list = _u16(1) + _u16(len(context)) + context
        reply = _u16(poll_number) + (_u16(0) if extended else b"") + self._rel_time().to_bytes(4, "big")
        reply += b"\xff" * 8 + _u16(1) + _u16(obj_code) + _u16(0) + poll_list
        action = wire.NOM_ACT_POLL_MDIB_DATA_EXT if extended else wire.NOM_ACT_POLL_MDIB_DATA
        result = wire.MDS_OBJECT + _u16(action) + _u16(len(reply)) + reply
        body = _u16(invoke_id) + _u16(wire.CONFIRMED_ACTION) + _u16(len(result)) + result
        if linked is not None:
            body = bytes(linked) + body
        return wire.SPPDU + _u16(ro_type) + _u16(len(body)) + body


def _alarm_list(entries: list[tuple[int, int, int, str]]) -> bytes:
    out = []
    for source, code, alert_type, text in entries:
        info = _u16(1) + (0x00010000 | code).to_bytes(4, "big") + _u16(0) + _u16(0) + _text(text)
        entry = _u16(source) + _u16(code) + _u16(alert_type) + _u16(0)
        entry += wire.MDS_OBJECT + _u16(0x0201) + _u16(len(info)) + info
        out.append(entry)
    body = b"".join(out)
    return _u16(len(out)) + _u16(len(body)) + body
