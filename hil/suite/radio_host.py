"""BLE devices in a suite: the gateway with the simulated radio in its own process.

`bedside run` reaches BLE sensors through BlueZ on the system D-Bus; the bench has no
Bluetooth adapter, and the simulated radio (hil/ble_radio.py: bleak's public API over
an in-memory backend) lives in the process that uses it. So a scenario with a BLE
device runs `python -m hil.suite.radio_host run --config GATEWAY.toml --steer SOCK`:
the same `Gateway` that `bedside run` builds from the same config, with the same
start-up checks, as its own process (kill -9, restart and the control socket work as
for `bedside run`), given the simulated radio instead of BlueZ, and the BLE sensors
of the config on that radio (GATT Pulse Oximeter, continuous measurements).

The bench steers the sensors over a Unix socket (`--steer`), one JSON object a line:
`{"device", "op": "state", spo2, pulse, sensor_off, period_s, "name"}` sets the
sensor's values and answers `{"trigger": name, "t": wall time}` when the first
notification carrying them went out; `leave` (out of radio range for `down_s`: the
connection drops without a goodbye), `silence` (connected, no notifications for
`down_s`: stale), `garbage` (a notification no PLX decoder accepts) and `reboot` (the
sensor restarts: the connection drops without a goodbye, as from a supervision
timeout; no advertising for `down_s`; then it advertises again with the same address
and answers `{"trigger": name}` at that moment, its power-on state a GATT server with
no subscriptions, so the gateway must connect and subscribe again). What the
radio is not: the air (no RF loss, no pairing, no BlueZ); a kill -9 of the gateway
also takes its sensors off the air until the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from hil.ble_radio import SimRadio
from hil.ble_sim import PlxContinuousSim
from hil.scenarios import Vitals
from hil.suite.spec import Device, Step

__all__ = ["BleDevice", "SteeredPlx", "main"]

log = logging.getLogger(__name__)

# Flags claiming SpO2 and pulse with one byte behind them: a measurement no PLX decoder accepts.
GARBAGE: Final = b"\x10\xff"
_CONNECT_S: Final = 0.1
PERIOD_S: Final = 0.5  # a measurement every 0.5 s, as the line devices' default 2 Hz


class SteeredPlx(PlxContinuousSim):
    """A continuous pulse oximeter whose values the bench sets; `on_sent(names)` after
    the first notification carrying a `state` op's values went out."""

    def __init__(self, address: str, period_s: float) -> None:
        super().__init__(address, "steady", period_s)
        self.values = Vitals(spo2=97.0, pulse=72.0, pi=3.5)
        self.pending: list[str] = []
        self.quiet_until = 0.0
        self.on_sent: Callable[[list[str]], None] = lambda names: None

    def encode(self, t: float) -> bytes:
        return self.encode_vitals(self.values)

    async def tick(self, t: float) -> None:
        if time.monotonic() < self.quiet_until:
            return
        carried, self.pending = self.pending, []
        if self.connected and self.subscribed(self.measurement_uuid) and await self.deliver(self.encode(t)):
            self.sent += 1
            if carried:
                self.on_sent(carried)
        else:
            self.pending[:0] = carried  # not delivered: the next notification carries them

    @property
    def measurement_uuid(self) -> str:
        from drivers.ble.codec import uuid16

        return uuid16(self.measurement)


class _Host:
    """The steering socket's side in the gateway's process."""

    def __init__(self, sensors: dict[str, SteeredPlx]) -> None:
        self.sensors = sensors
        self._writers: set[asyncio.StreamWriter] = set()

    def _say(self, reply: dict[str, Any]) -> None:
        line = (json.dumps(reply) + "\n").encode()
        for writer in list(self._writers):
            if not writer.is_closing():
                writer.write(line)

    def _apply(self, req: dict[str, Any]) -> None:
        sensor = self.sensors.get(str(req.get("device")))
        if sensor is None:
            return
        op, down_s = req.get("op"), float(req.get("down_s", 3.0))
        if op == "state":
            sensor.values = Vitals(spo2=float(req["spo2"]), pulse=float(req["pulse"]), pi=3.5,
                                   sensor_off=bool(req["sensor_off"]))  # fmt: skip
            if req.get("name"):
                sensor.pending.append(str(req["name"]))
        elif op == "leave":
            sensor.leave()
            asyncio.get_running_loop().call_later(down_s, sensor.come_back)
        elif op == "reboot":
            sensor.leave()  # not advertising while it boots: the scanner cannot see it
            sensor.quiet_until = 0.0  # a silence ends with the power
            asyncio.get_running_loop().call_later(down_s, self._booted, str(req.get("device")), str(req.get("name")))
        elif op == "silence":
            sensor.quiet_until = time.monotonic() + down_s
        elif op == "garbage" and sensor.connected:
            sensor.notify(sensor.measurement_uuid, GARBAGE)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    req = json.loads(line)
                    if isinstance(req, dict):
                        self._apply(req)
        finally:
            self._writers.discard(writer)
            writer.close()

    def _booted(self, device: str, name: str) -> None:
        self.sensors[device].come_back()
        if name:
            self.sent(device, [name])

    def sent(self, device: str, names: list[str]) -> None:
        now = time.time()
        for name in names:
            self._say({"device": device, "trigger": name, "t": now})


async def _run(config_path: str, steer: Path) -> bool:
    from appliance.config import load_config
    from appliance.config_checks import startup_checks
    from appliance.gateway import Gateway
    from appliance.timesync import kernel_clock

    config = load_config(config_path)
    startup_checks(config, config_path)
    logging.basicConfig(level=getattr(logging, config.gateway.log_level.upper()), stream=sys.stderr)
    radio = SimRadio()
    on_air = [d for d in config.devices if d.port.startswith("ble:")]
    sensors = {d.id: radio.add(SteeredPlx(d.port.removeprefix("ble:"), PERIOD_S)) for d in on_air}
    host = _Host(sensors)
    for device_id, sensor in sensors.items():
        sensor.on_sent = functools.partial(host.sent, device_id)
    steer.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(host.serve, str(steer))
    tasks = [asyncio.create_task(s.run()) for s in sensors.values()]  # on the air before the first scan
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await Gateway(config, kernel_clock(), radio=radio.backend()).run(stop)
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    from appliance.core.errors import BedsideError, exit_code

    parser = argparse.ArgumentParser(prog="python -m hil.suite.radio_host")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the gateway with its BLE sensors on a simulated radio")
    run.add_argument("--config", required=True, help="the gateway's config (as for bedside run)")
    run.add_argument("--steer", required=True, help="Unix socket the bench steers the sensors through")
    args = parser.parse_args(argv)
    try:
        return 0 if asyncio.run(_run(args.config, Path(args.steer))) else 1
    except BedsideError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return exit_code(exc)


class BleDevice:
    """The bench side of one BLE sensor: steers it in the gateway's process. The socket
    is (re)connected whenever the host is up, and the sensor's state sent again after a
    restart of the gateway (the sensor came back with it)."""

    def __init__(self, spec: Device, on_trigger: Callable[[str, float], None], steer: Path) -> None:
        self.spec = spec
        self.steer = steer
        self.frames = 0
        self._on_trigger = on_trigger
        self._state: dict[str, Any] = {"spo2": spec.spo2, "pulse": spec.pulse, "sensor_off": False}
        self._writer: asyncio.StreamWriter | None = None

    def _send(self, req: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write((json.dumps({"device": self.spec.id, **req}) + "\n").encode())

    def apply(self, step: Step) -> None:
        for key in ("spo2", "pulse", "sensor_off"):
            if (value := getattr(step, key)) is not None:
                self._state[key] = value
        self._send({"op": "state", **self._state, "name": step.name})

    def garbage(self) -> None:
        self._send({"op": "garbage"})

    def silence(self, down_s: float) -> None:
        self._send({"op": "silence", "down_s": down_s})

    async def cable_pull(self, down_s: float) -> None:
        self._send({"op": "leave", "down_s": down_s})
        await asyncio.sleep(down_s)

    async def reboot(self, down_s: float, end: str) -> None:
        self._send({"op": "reboot", "down_s": down_s, "name": end})
        await asyncio.sleep(down_s)

    async def run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.steer))
            except OSError:
                await asyncio.sleep(_CONNECT_S)  # the gateway (and its radio) is not up yet
                continue
            self._writer = writer
            self._send({"op": "state", **self._state})
            try:
                while line := await reader.readline():
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        msg = json.loads(line)
                        if msg["device"] == self.spec.id:
                            self._on_trigger(str(msg["trigger"]), float(msg["t"]))
                            self.frames += 1
            except OSError:
                pass
            except asyncio.CancelledError:
                # The scenario is over: the sensor (in the gateway's process) stops
                # notifying, so the bench's drain sees everything the gateway recorded.
                self._send({"op": "silence", "down_s": 3600.0})
                with contextlib.suppress(OSError):
                    await writer.drain()
                raise
            finally:
                self._writer = None
                writer.close()


if __name__ == "__main__":
    sys.exit(main())
