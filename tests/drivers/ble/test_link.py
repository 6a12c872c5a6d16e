"""The BLE link against simulated peripherals through bleak's public API and our sim backend."""

import asyncio
import contextlib
from datetime import datetime, timedelta

import pytest

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.ble.link import TRANSITIONS, BleLink, BleTiming, LinkInput, LinkState, MemoryCursor, step
from drivers.ble.profiles import PROFILES
from drivers.devices import LinkTiming
from hil.ble_radio import SimRadio
from hil.ble_sim import BloodPressureSim, GlucoseSim, HeartRateSim
from tests.integration.helpers import until

FAST = BleTiming(
    scan_timeout_s=0.5, records_timeout_s=5, link=LinkTiming(stale_after_s=0.6, reopen_min_s=0.05, reopen_max_s=0.2)
)
HR_ADDR = "C0:FF:EE:00:00:01"
GLU_ADDR = "C0:FF:EE:00:00:02"


def technical(events, kind=None):
    return [(e.kind, e.active) for e in events if isinstance(e, TechnicalEvent) and kind in (None, e.kind)]


def readings(events, prefix=""):
    return [e for e in events if isinstance(e, Reading) and e.label.startswith(prefix)]


@contextlib.asynccontextmanager
async def running(*coros):
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def link(radio, profile, address, events, cursor=None, timing=FAST):
    return BleLink(
        f"dev-{profile}", PROFILES[profile], address, events.append, timing=timing, backend=radio.backend(),
        cursor=cursor,
    )  # fmt: skip


async def test_heart_rate_streams_then_survives_leaving_range():
    radio = SimRadio()
    strap = radio.add(HeartRateSim(HR_ADDR, period_s=0.05))
    events: list[DeviceEvent] = []
    hr = link(radio, "heart-rate", HR_ADDR, events)
    async with running(strap.run(), hr.run()):
        await until(lambda: len(readings(events, "HR")) >= 5)
        assert technical(events) == [("connected", True)]
        assert hr.state is LinkState.STREAMING
        assert {r.label for r in readings(events)} == {"HR", "RR"}
        strap.leave()
        await until(lambda: ("disconnected", True) in technical(events))
        before = len(readings(events, "HR"))
        await asyncio.sleep(0.5)  # several failed reconnects: still one disconnected event
        assert technical(events, "disconnected") == [("disconnected", True)]
        assert len(readings(events, "HR")) == before
        strap.come_back()
        await until(lambda: len(readings(events, "HR")) >= before + 5)
    assert technical(events, "connected") == [("connected", True), ("connected", True)]
    assert strap.connections == 2


async def test_silence_on_a_continuous_link_is_stale_then_ends():
    radio = SimRadio()
    strap = radio.add(HeartRateSim(HR_ADDR, period_s=0.05))
    events: list[DeviceEvent] = []
    async with running(link(radio, "heart-rate", HR_ADDR, events).run()) as _:
        sim = asyncio.create_task(strap.run())
        await until(lambda: len(readings(events, "HR")) >= 3)
        sim.cancel()
        await until(lambda: ("stale", True) in technical(events), timeout_s=5)
        sim = asyncio.create_task(strap.run())
        await until(lambda: ("stale", False) in technical(events), timeout_s=5)
        sim.cancel()


async def test_glucose_catch_up_delivers_every_record_once_with_its_own_time():
    radio = SimRadio()
    meter = radio.add(GlucoseSim(GLU_ADDR, period_s=0.05))
    events: list[DeviceEvent] = []
    cursor = MemoryCursor()
    async with running(meter.run(), link(radio, "glucose", None, events, cursor).run()):  # found by service
        await until(lambda: len(readings(events, "GLU")) >= 3)
        meter.leave()
        await asyncio.sleep(0.5)  # the meter keeps measuring out of range
        missed = len(meter.records) - len(readings(events, "GLU"))
        assert missed >= 5
        meter.come_back()

        def complete() -> bool:
            seqs = {r.seq // 64 for r in readings(events, "GLU")}
            return meter.reports >= missed and seqs == set(range(1, len(meter.records) + 1))

        # A record measured while the catch-up was running comes after the next live
        # one (which reveals the gap): order may differ, completeness may not.
        await until(complete)
    got = readings(events, "GLU")
    seqs = [r.seq // 64 for r in got]
    assert len(seqs) == len(set(seqs)), "each record once"
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "nothing measured out of range is lost"
    by_seq = {rec.seq: rec for rec in meter.records}
    for reading in got:
        rec = by_seq[reading.seq // 64]
        assert reading.device_time == rec.time  # the record's own time, not the time it arrived
        assert reading.value == rec.mg_dl
        assert "meal_preprandial" in reading.flags or "meal_postprandial" in reading.flags
    assert any("stored" in r.flags for r in got)
    assert cursor.seqs["dev-glucose"] == max(seqs)


async def test_a_restarted_link_fetches_only_newer_records():
    radio = SimRadio()
    meter = radio.add(GlucoseSim(GLU_ADDR, period_s=10))
    for _ in range(6):
        await meter.tick(0)  # six records before the gateway ever saw the meter
    cursor = MemoryCursor()
    first: list[DeviceEvent] = []
    async with running(link(radio, "glucose", GLU_ADDR, first, cursor).run()):
        await until(lambda: cursor.seqs.get("dev-glucose") == 6)
    assert [r.seq // 64 for r in readings(first, "GLU")] == [1, 2, 3, 4, 5, 6]
    for _ in range(3):
        await meter.tick(0)
    meter.reports = 0
    second: list[DeviceEvent] = []
    async with running(link(radio, "glucose", GLU_ADDR, second, cursor).run()):  # gateway restart
        await until(lambda: cursor.seqs.get("dev-glucose") == 9)
    assert [r.seq // 64 for r in readings(second, "GLU")] == [7, 8, 9]
    assert meter.reports == 3  # asked for >= 7 only


async def test_a_link_stopped_mid_catch_up_keeps_what_it_delivered():
    radio = SimRadio()
    meter = radio.add(GlucoseSim(GLU_ADDR, period_s=10))
    for _ in range(60):
        await meter.tick(0)
    cursor = MemoryCursor()
    first: list[DeviceEvent] = []
    async with running(link(radio, "glucose", GLU_ADDR, first, cursor).run()):
        await until(lambda: len(readings(first, "GLU")) >= 10)
    delivered = [r.seq // 64 for r in readings(first, "GLU")]
    assert len(delivered) < 60, "stopped before the catch-up ended"
    assert cursor.seqs["dev-glucose"] == delivered[-1]  # persisted on the way out
    second: list[DeviceEvent] = []
    async with running(link(radio, "glucose", GLU_ADDR, second, cursor).run()):  # gateway restart
        await until(lambda: cursor.seqs.get("dev-glucose") == 60)
    assert delivered + [r.seq // 64 for r in readings(second, "GLU")] == list(range(1, 61))


async def test_records_offered_again_are_skipped():
    radio = SimRadio()
    meter = radio.add(GlucoseSim(GLU_ADDR, period_s=10))
    for _ in range(4):
        await meter.tick(0)
    cursor = MemoryCursor()
    cursor.set_last_record("dev-glucose", 2)
    events: list[DeviceEvent] = []
    gl = link(radio, "glucose", GLU_ADDR, events, cursor)
    async with running(gl.run()):
        await until(lambda: cursor.seqs["dev-glucose"] == 4)
        meter._send(meter.records[0])  # a meter that re-sends an old record unasked
        await asyncio.sleep(0.05)
    assert [r.seq // 64 for r in readings(events, "GLU")] == [3, 4]
    assert gl.duplicates == 1


async def test_low_battery_and_clock_set_from_the_gateway():
    radio = SimRadio()
    strap = radio.add(HeartRateSim(HR_ADDR, period_s=0.05))
    assert abs(strap.clock() - datetime.now()) > timedelta(hours=1)  # starts wrong
    events: list[DeviceEvent] = []
    async with running(strap.run(), link(radio, "heart-rate", HR_ADDR, events).run()):
        await until(lambda: strap.connected and len(readings(events, "HR")) >= 2)
        assert abs(strap.clock() - datetime.now()) < timedelta(seconds=5)
        strap.set_battery(12)
        await until(lambda: ("low_battery", True) in technical(events))
        strap.set_battery(80)
        await until(lambda: ("low_battery", False) in technical(events))


async def test_blood_pressure_readings_taken_while_away_arrive_after_reconnect():
    radio = SimRadio()
    cuff = radio.add(BloodPressureSim("C0:FF:EE:00:00:03", period_s=10))
    cuff.leave()
    for t in range(3):
        await cuff.tick(float(t))
    assert len(cuff.stored) == 3
    events: list[DeviceEvent] = []
    async with running(link(radio, "blood-pressure", "C0:FF:EE:00:00:03", events).run()):
        await asyncio.sleep(0.3)
        assert readings(events) == []
        assert technical(events) == []  # an episodic device being away is normal
        cuff.come_back()
        await until(lambda: len(readings(events, "NIBP_SYS")) == 3)
    assert cuff.stored == []
    assert all(r.device_time is not None for r in readings(events))


async def test_a_continuous_device_never_found_is_reported_once():
    events: list[DeviceEvent] = []
    hr = link(SimRadio(), "heart-rate", HR_ADDR, events)
    async with running(hr.run()):
        await until(lambda: technical(events))
        await asyncio.sleep(1.2)
    assert technical(events) == [("disconnected", True)]


def test_transition_table_is_the_only_way_between_states():
    reachable = {LinkState.SEARCHING}
    for (src, _), dst in TRANSITIONS.items():
        assert src in reachable or any(d == src for d in TRANSITIONS.values())
        reachable.add(dst)
    assert reachable == set(LinkState)
    assert step(LinkState.SEARCHING, LinkInput.FOUND) is LinkState.CONNECTING
    with pytest.raises(RuntimeError, match="no transition"):
        step(LinkState.STREAMING, LinkInput.FOUND)


class EagerMeter(GlucoseSim):
    """Sends its newest record the moment notifications are enabled, before any RACP request."""

    def on_subscribe(self, uuid):
        if uuid.startswith("00002a18") and self.records:
            self._send(self.records[-1])


async def test_a_live_record_before_the_catch_up_does_not_skip_the_gap():
    radio = SimRadio()
    meter = radio.add(EagerMeter(GLU_ADDR, period_s=10))
    for _ in range(5):
        await meter.tick(0)
    cursor = MemoryCursor()
    events: list[DeviceEvent] = []
    gl = link(radio, "glucose", GLU_ADDR, events, cursor)
    async with running(gl.run()):
        await until(lambda: cursor.seqs.get("dev-glucose") == 5 and meter.reports == 5)
        await asyncio.sleep(0.05)
    assert sorted(r.seq // 64 for r in readings(events, "GLU")) == [1, 2, 3, 4, 5]
    assert gl.duplicates == 1  # record 5 again, in the catch-up


class BusyMeter(GlucoseSim):
    """Measures twice while answering RACP and never notifies those two live."""

    quiet_records = 2

    async def _racp(self, data):
        await super()._racp(data)
        while self.quiet_records:
            self.quiet_records -= 1
            rec = self.records[-1]
            self.records.append(type(rec)(rec.seq + 1, rec.time, rec.mg_dl))


async def test_records_skipped_live_are_fetched_when_a_later_one_shows_the_gap():
    radio = SimRadio()
    meter = radio.add(BusyMeter(GLU_ADDR, period_s=10))
    for _ in range(3):
        await meter.tick(0)
    cursor = MemoryCursor()
    events: list[DeviceEvent] = []
    async with running(link(radio, "glucose", GLU_ADDR, events, cursor).run()):
        await until(lambda: cursor.seqs.get("dev-glucose") == 3 and len(meter.records) == 5)
        assert [r.seq // 64 for r in readings(events, "GLU")] == [1, 2, 3]
        await meter.tick(0)  # record 6 arrives live: 4 and 5 were never sent
        await until(lambda: cursor.seqs.get("dev-glucose") == 6)
    assert sorted(r.seq // 64 for r in readings(events, "GLU")) == [1, 2, 3, 4, 5, 6]


def test_a_gap_catch_up_while_streaming_goes_through_the_table():
    assert TRANSITIONS[(LinkState.STREAMING, LinkInput.CATCH_UP)] is LinkState.CATCHING_UP
    assert step(LinkState.CATCHING_UP, LinkInput.CAUGHT_UP) is LinkState.STREAMING
