"""The BLE sensor's reboot in the radio host, read by the gateway's own BLE link.

Invariants: the link is dropped without a goodbye, the sensor does not advertise (no
connection succeeds) for `down_s`, it comes back with the same address and says so
(the step's end), and the gateway's link connects and subscribes again by itself."""

import asyncio
import time

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.ble.link import BleLink, BleTiming
from drivers.ble.profiles import PROFILES
from drivers.devices import LinkTiming
from hil.ble_radio import SimRadio
from hil.suite.radio_host import SteeredPlx, _Host
from tests.integration.helpers import until

ADDR = "C0:FF:EE:51:01:02"
FAST = BleTiming(scan_timeout_s=0.3, link=LinkTiming(stale_after_s=2.0, reopen_min_s=0.05, reopen_max_s=0.1))
DOWN_S = 0.6


def _kinds(events: list[DeviceEvent]) -> list[tuple[str, bool]]:
    return [(e.kind, e.active) for e in events if isinstance(e, TechnicalEvent)]


async def test_a_rebooted_sensor_is_off_the_air_for_down_s_and_the_gateway_reconnects() -> None:
    radio = SimRadio()
    sensor = radio.add(SteeredPlx(ADDR, 0.05))
    host = _Host({"plx": sensor})
    said: list[tuple[str, list[str], float]] = []
    host.sent = lambda device, names: said.append((device, names, time.time()))  # type: ignore[method-assign]
    events: list[DeviceEvent] = []
    link = BleLink("plx", PROFILES["plx-continuous"], ADDR, events.append, timing=FAST, backend=radio.backend())
    tasks = [asyncio.create_task(sensor.run()), asyncio.create_task(link.run())]
    try:
        await until(lambda: sum(isinstance(e, Reading) for e in events) >= 4, timeout_s=10)
        off = time.time()
        host._apply({"device": "plx", "op": "reboot", "down_s": DOWN_S, "name": "boot/end"})
        await until(lambda: ("disconnected", True) in _kinds(events), timeout_s=5)
        readings = sum(isinstance(e, Reading) for e in events)
        await asyncio.sleep(DOWN_S - 0.15)  # off: the link keeps trying and finds nothing
        assert sensor.connections == 1 and not sensor.connected
        assert sum(isinstance(e, Reading) for e in events) == readings
        await until(lambda: bool(said), timeout_s=5)
        assert said[0][:2] == ("plx", ["boot/end"]) and said[0][2] - off >= DOWN_S - 0.01
        await until(lambda: sum(isinstance(e, Reading) for e in events) >= readings + 4, timeout_s=10)
        assert sensor.subscribed(sensor.measurement_uuid)  # its power-on GATT server was subscribed anew
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sensor.connections == 2 and sensor.address == ADDR  # the same sensor, connected again
