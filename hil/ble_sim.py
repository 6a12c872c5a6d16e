"""Simulated BLE health peripherals, one per profile, on the simulated radio.

Each simulator is a GATT server with its profile's service, a Battery service
(read + notify) and a Current Time service (read + write), and encodes its
values itself from the fact sheet (shared/protocols/ble-health.md), independent
of the gateway's decoders. Vital signs follow `hil.scenarios`. The device clock
starts wrong (`clock_offset_s`) until the gateway writes Current Time.

The glucose meter keeps measuring while out of range and serves its record
store through the Record Access Control Point (report all / >= sequence number /
count / abort); the blood-pressure cuff keeps the readings it could not deliver
and indicates them after the next subscription, as cuffs do.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bleak.assigned_numbers import CharacteristicPropertyName

from drivers.ble.codec import uuid16
from drivers.ble.numbers import encode_current_time, parse_current_time, sfloat_raw
from hil.ble_radio import SimChar, SimPeripheral, SimService
from hil.scenarios import Vitals, vitals_at

__all__ = ["SIMULATORS", "GlucoseSim", "ProfileSim", "make_sim"]

BATTERY: Final = uuid16(0x2A19)
CURRENT_TIME: Final = uuid16(0x2A2B)
RACP: Final = uuid16(0x2A52)


def _sf(value: float | None, exponent: int = 0) -> bytes:
    return sfloat_raw(value, exponent).to_bytes(2, "little")


def _date_time(t: datetime) -> bytes:
    return t.year.to_bytes(2, "little") + bytes([t.month, t.day, t.hour, t.minute, t.second])


class ProfileSim(SimPeripheral):
    profile = ""
    service = 0
    measurement = 0
    mode = "notify"

    def __init__(
        self, address: str, scenario: str = "steady", period_s: float = 1.0, *, battery_pct: int = 90,
        clock_offset_s: float = 7200.0, extra_chars: list[SimChar] | None = None,
    ) -> None:  # fmt: skip
        self.scenario = scenario
        self.period_s = period_s
        self.clock_offset = timedelta(seconds=clock_offset_s)
        self.sent = 0
        props: list[CharacteristicPropertyName] = ["notify"] if self.mode == "notify" else ["indicate"]
        main = SimService(uuid16(self.service), [SimChar(uuid16(self.measurement), props), *(extra_chars or [])])
        battery = SimService(uuid16(0x180F), [SimChar(BATTERY, ["read", "notify"], bytes([battery_pct]))])
        clock = SimService(
            uuid16(0x1805), [SimChar(CURRENT_TIME, ["read", "write", "notify"], on_write=self._set_clock)]
        )
        super().__init__(address, f"Sim {self.profile}", [main, battery, clock])
        self._tasks: set[asyncio.Task[object]] = set()

    def background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # device clock ---------------------------------------------------------------------
    def clock(self) -> datetime:
        return datetime.now() + self.clock_offset

    def _set_clock(self, data: bytes) -> None:
        written = parse_current_time(data).time
        if written is not None:
            self.clock_offset = written - datetime.now()

    def set_battery(self, pct: int) -> None:
        self.chars[BATTERY].value = bytes([pct])
        self.notify(BATTERY, bytes([pct]))

    # values ---------------------------------------------------------------------------
    def encode(self, t: float) -> bytes:
        raise NotImplementedError

    async def deliver(self, data: bytes) -> bool:
        uuid = uuid16(self.measurement)
        if self.mode == "indicate":
            return await self.indicate(uuid, data)
        return self.notify(uuid, data)

    async def tick(self, t: float) -> None:
        if self.connected and self.subscribed(uuid16(self.measurement)) and await self.deliver(self.encode(t)):
            self.sent += 1

    async def run(self, time_scale: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            await self.tick((loop.time() - start) * time_scale)
            await asyncio.sleep(self.period_s / time_scale)


class HeartRateSim(ProfileSim):
    profile, service, measurement, mode = "heart-rate", 0x180D, 0x2A37, "notify"

    def encode(self, t: float) -> bytes:
        hr = round(vitals_at(self.scenario, t).pulse)
        rr = round(60 / hr * 1024)
        return bytes([0x16, hr]) + rr.to_bytes(2, "little")  # uint8 HR, contact detected, one RR


class PlxContinuousSim(ProfileSim):
    profile, service, measurement, mode = "plx-continuous", 0x1822, 0x2A5F, "notify"

    def __init__(
        self, address: str, scenario: str = "steady", period_s: float = 1.0, *, battery_pct: int = 90,
        clock_offset_s: float = 7200.0,
    ) -> None:  # fmt: skip
        features = SimChar(uuid16(0x2A60), ["read"], bytes([0x03, 0x00, 0xA0, 0x00, 0x20, 0x80, 0x00]))
        super().__init__(
            address, scenario, period_s, battery_pct=battery_pct, clock_offset_s=clock_offset_s, extra_chars=[features]
        )

    def encode(self, t: float) -> bytes:
        return self.encode_vitals(vitals_at(self.scenario, t))

    @staticmethod
    def encode_vitals(v: Vitals) -> bytes:
        """One continuous measurement carrying `v` (the suite's bench steers these)."""
        if v.sensor_off:  # device and sensor status: sensor disconnected (bit 15), no values
            return bytes([0x08]) + _sf(None) + _sf(None) + (1 << 15).to_bytes(3, "little")
        return bytes([0x10]) + _sf(v.spo2) + _sf(v.pulse) + _sf(v.pi, -1)


class PlxSpotSim(ProfileSim):
    profile, service, measurement, mode = "plx-spot", 0x1822, 0x2A5E, "indicate"

    def encode(self, t: float) -> bytes:
        v = vitals_at(self.scenario, t)
        return bytes([0x03]) + _sf(v.spo2) + _sf(v.pulse) + _date_time(self.clock()) + (0x0080).to_bytes(2, "little")


class ThermometerSim(ProfileSim):
    profile, service, measurement, mode = "temperature", 0x1809, 0x2A1C, "indicate"

    def encode(self, t: float) -> bytes:
        tenths = round(366 + 3 * math.sin(t / 60))
        value = (0xFF << 24) | tenths  # FLOAT, exponent -1
        return bytes([0x06]) + value.to_bytes(4, "little") + _date_time(self.clock()) + bytes([6])  # mouth


class BloodPressureSim(ProfileSim):
    """Keeps what it measured while nobody listened and indicates it after the next subscription."""

    profile, service, measurement, mode = "blood-pressure", 0x1810, 0x2A35, "indicate"
    MAX_STORED: Final = 25

    def __init__(
        self, address: str, scenario: str = "steady", period_s: float = 1.0, *, battery_pct: int = 90,
        clock_offset_s: float = 7200.0,
    ) -> None:  # fmt: skip
        super().__init__(address, scenario, period_s, battery_pct=battery_pct, clock_offset_s=clock_offset_s)
        self.stored: list[bytes] = []

    def encode(self, t: float) -> bytes:
        pulse = round(vitals_at(self.scenario, t).pulse)
        sys_, dia = 118 + round(4 * math.sin(t / 90)), 78
        mean = round(dia + (sys_ - dia) / 3)
        return (
            bytes([0x1E]) + _sf(sys_) + _sf(dia) + _sf(mean) + _date_time(self.clock()) + _sf(pulse) + bytes([1])
            + (0).to_bytes(2, "little")
        )  # fmt: skip

    async def tick(self, t: float) -> None:
        data = self.encode(t)
        if self.connected and self.subscribed(uuid16(self.measurement)) and await self.deliver(data):
            self.sent += 1
        else:
            self.stored = [*self.stored, data][-self.MAX_STORED :]

    def on_subscribe(self, uuid: str) -> None:
        if uuid == uuid16(self.measurement) and self.stored:
            self.background(self._send_stored())

    async def _send_stored(self) -> None:
        while self.stored and self.connected:
            if not await self.deliver(self.stored[0]):
                return
            self.stored.pop(0)
            self.sent += 1


class WeightSim(ProfileSim):
    profile, service, measurement, mode = "weight", 0x181D, 0x2A9D, "indicate"

    def encode(self, t: float) -> bytes:
        raw = round((81.5 + 0.2 * math.sin(t / 300)) / 0.005)
        return (
            bytes([0x0A])
            + raw.to_bytes(2, "little")
            + _date_time(self.clock())
            + (266).to_bytes(2, "little")
            + (1750).to_bytes(2, "little")
        )


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    seq: int
    time: datetime
    mg_dl: int


class GlucoseSim(ProfileSim):
    """A meter that measures on its own schedule, in range or not, and serves its store over RACP."""

    profile, service, measurement, mode = "glucose", 0x1808, 0x2A18, "notify"

    def __init__(
        self, address: str, scenario: str = "steady", period_s: float = 1.0, *, battery_pct: int = 90,
        clock_offset_s: float = 7200.0,
    ) -> None:  # fmt: skip
        context = SimChar(uuid16(0x2A34), ["notify"])
        racp = SimChar(RACP, ["write", "indicate"], on_write=self._racp_write)
        features = SimChar(uuid16(0x2A51), ["read"], (0x0001).to_bytes(2, "little"))
        super().__init__(
            address, scenario, period_s, battery_pct=battery_pct, clock_offset_s=clock_offset_s,
            extra_chars=[context, racp, features],
        )  # fmt: skip
        self.records: list[GlucoseRecord] = []
        self.procedure: asyncio.Task[None] | None = None
        self.reports = 0  # records sent in answer to RACP requests

    def encode_record(self, rec: GlucoseRecord) -> bytes:
        # flags: concentration present (kg/L), context follows; capillary whole blood, finger.
        return (
            bytes([0x12])
            + rec.seq.to_bytes(2, "little")
            + _date_time(rec.time)
            + _sf(rec.mg_dl * 1e-5, -5)
            + bytes([0x11])
        )

    @staticmethod
    def encode_context(rec: GlucoseRecord) -> bytes:
        meal = 1 if rec.seq % 2 else 2  # preprandial / postprandial
        return bytes([0x02]) + rec.seq.to_bytes(2, "little") + bytes([meal])

    async def tick(self, t: float) -> None:
        mg_dl = round(105 + 25 * math.sin(t / 120))
        rec = GlucoseRecord(len(self.records) + 1, self.clock().replace(microsecond=0), mg_dl)
        self.records.append(rec)
        busy = self.procedure is not None and not self.procedure.done()
        if self.connected and self.subscribed(uuid16(self.measurement)) and not busy:
            self._send(rec)
            self.sent += 1

    def _send(self, rec: GlucoseRecord) -> None:
        self.notify(uuid16(self.measurement), self.encode_record(rec))
        self.notify(uuid16(0x2A34), self.encode_context(rec))

    def _racp_write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        if data[:1] == b"\x03":  # abort
            if self.procedure is not None:
                self.procedure.cancel()
            self.background(self.indicate(RACP, bytes([6, 0, 3, 1])))
            return
        if self.procedure is not None and not self.procedure.done():
            self.background(self.indicate(RACP, bytes([6, 0, data[0], 8])))  # procedure not completed
            return
        self.procedure = loop.create_task(self._racp(data))

    async def _racp(self, data: bytes) -> None:
        op, operator = data[0], data[1] if len(data) > 1 else 0
        if op == 4:  # report number of stored records
            await self.indicate(RACP, bytes([5, 0]) + len(self.records).to_bytes(2, "little"))
            return
        if op != 1:
            await self.indicate(RACP, bytes([6, 0, op, 2]))  # op code not supported
            return
        if operator == 1:
            chosen = list(self.records)
        elif operator == 3 and len(data) >= 5 and data[2] == 1:
            first = int.from_bytes(data[3:5], "little")
            chosen = [r for r in self.records if r.seq >= first]
        else:
            await self.indicate(RACP, bytes([6, 0, op, 4]))  # operator not supported
            return
        for rec in chosen:
            if not self.connected:
                return
            self._send(rec)
            self.reports += 1
            await asyncio.sleep(0.005)  # records go out one connection event apart
        await self.indicate(RACP, bytes([6, 0, 1, 1 if chosen else 6]))


SIMULATORS: Final[dict[str, type[ProfileSim]]] = {
    sim.profile: sim
    for sim in (HeartRateSim, PlxContinuousSim, PlxSpotSim, ThermometerSim, BloodPressureSim, WeightSim, GlucoseSim)
}


def make_sim(profile: str, address: str, scenario: str = "steady", period_s: float = 1.0) -> ProfileSim:
    return SIMULATORS[profile](address, scenario, period_s)


def current_time_value() -> bytes:
    return encode_current_time(datetime.now())
