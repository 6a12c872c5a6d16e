"""`bedside demo`: a whole bedside on one laptop.

Simulated oximeters on pseudo-terminals (with a garbage burst and a cable pull
now and then), the real gateway reading them through pyserial exactly as it
would real ports, and a live terminal view of the latest vitals per bed and the
recent technical events. No broker needed: records also go to a JSON-lines file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import termios
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

from appliance.config import parse_config
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent
from appliance.gateway import Gateway
from drivers import registry
from hil.ble_radio import SimRadio
from hil.ble_sim import ProfileSim, make_sim
from hil.broker import Broker, free_port, make_pki
from hil.simulate import SimConfig, simulate
from rules.engine import Ack, Pause

__all__ = ["LiveView", "run_demo"]

# ANSI colours for the alarm list: IEC 60601-1-8 red / yellow / cyan by priority.
COLORS: Final = {"high": "\x1b[1;37;41m", "medium": "\x1b[30;43m", "low": "\x1b[30;46m"}
RESET: Final = "\x1b[0m"
SHORT_NAMES: Final = {
    "MDC_PULS_OXIM_SAT_O2": "SpO2",
    "MDC_PULS_OXIM_PULS_RATE": "Pulse",
    "MDC_PULS_OXIM_PERF_REL": "PI",
    "MDC_CONC_HB_CO_GEN": "SpCO",
    "MDC_CONC_HB_MET_GEN": "SpMet",
    "MDC_ECG_HEART_RATE": "HR",
    "MDC_PRESS_BLD_NONINV_MEAN": "NBPm",
    "MDC_RESP_RATE": "RR",
    "MDC_AWAY_CO2_ET": "etCO2",
    "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD": "Glucose",
}
DEVICES: Final = (
    # (device id, protocol, bed, simulator)
    ("masimo-1", "masimo", "ICU-1", SimConfig("masimo", "", "desaturation", "radical7", time_scale=3)),
    ("nonin-1", "nonin-2", "ICU-2", SimConfig("nonin", "", "tachycardia", data_format=2, time_scale=3)),
    (
        "masimo-2",
        "masimo",
        "ICU-3",
        SimConfig("masimo", "", "sensor-off", "rad8", garbage_every_s=7, cable_pull_every_s=25, cable_down_s=3),
    ),
    # A Philips monitor: association, MDS create, polls at 115200 8N1.
    ("intellivue-1", "intellivue", "ICU-4", SimConfig("intellivue", "", "desaturation", baud=115200, time_scale=3)),
    # A GE S/5: displayed values every 5 s at 19200 8E1 with RTS/CTS.
    ("s5-1", "datex", "ICU-5", SimConfig("datex", "", "tachycardia", baud=19200, time_scale=3)),
    # A Dräger Evita 4 on MEDIBUS (19200 8E1), with realtime bytes mixed into the slow protocol.
    ("evita-1", "medibus-evita4", "ICU-6", SimConfig("medibus", "", "desaturation", "evita4", baud=19200)),
    # An HL7 sender (PCD-01 vitals, PCD-04 alerts) connecting to the gateway's MLLP listener.
    ("hl7-1", "hl7", "ICU-7", SimConfig("hl7", "", "desaturation", time_scale=3)),
)


# BLE sensors on a simulated radio, read through bleak exactly as BlueZ devices would be:
# (device id, profile, bed, address, scenario, period s). The glucose meter wanders out of
# range now and then and keeps measuring; its readings arrive on return, once each.
BLE_DEVICES: Final = (
    ("hr-strap-1", "heart-rate", "ICU-8", "C0:FF:EE:00:08:01", "steady", 1.0),
    ("glucose-1", "glucose", "ICU-9", "C0:FF:EE:00:09:01", "steady", 3.0),
)
BLE_AWAY_EVERY_S: Final = 20.0
BLE_AWAY_FOR_S: Final = 8.0


def device_ports(workdir: Path) -> dict[str, str]:
    """A pty symlink per serial device; a free loopback port for the HL7 listener."""
    return {
        dev_id: f"tcp://127.0.0.1:{free_port()}" if protocol == "hl7" else str(workdir / dev_id)
        for dev_id, protocol, _, _ in DEVICES
    }


def demo_config(workdir: Path, broker: Broker | None = None, ports: dict[str, str] | None = None) -> str:
    ports = ports or device_ports(workdir)
    lines = [
        "[gateway]",
        'bed_id = "ICU-1"',
        f'registry_path = "{workdir / "registry.json"}"',
        'log_level = "warning"',
        "[sink]",
        f'jsonl_path = "{workdir / "records.jsonl"}"',
        "[alarms]",
        "console = false",  # the live view shows alarms; log lines would tear it
        f'events_path = "{workdir / "alarms.jsonl"}"',
        f'control_socket = "{workdir / "control.sock"}"',
        "[queue]",
        f'path = "{workdir / "store.db"}"',
        f'key_path = "{workdir / "store.key"}"',
    ]
    if broker is not None:
        gw = broker.pki.client("gw-1")
        lines += [
            "[uplink]",
            'host = "127.0.0.1"',
            f"port = {broker.port}",
            'server_hostname = "localhost"',
            'gateway_id = "gw-1"',
            f'ca_path = "{gw.ca}"',
            f'cert_path = "{gw.cert}"',
            f'key_path = "{gw.key}"',
            "connect_timeout_s = 3.0",
        ]
    for dev_id, protocol, bed, sim in DEVICES:
        lines += ["[[devices]]", f'id = "{dev_id}"', f'protocol = "{protocol}"', f'port = "{ports[dev_id]}"']
        lines += _line_settings(protocol, ports[dev_id], sim.baud)
        lines.append(f'bed_id = "{bed}"')
    for dev_id, profile, bed, address, _, _ in BLE_DEVICES:
        lines += [
            "[[devices]]",
            f'id = "{dev_id}"',
            f'protocol = "ble-{profile}"',
            f'port = "ble:{address}"',
            f'bed_id = "{bed}"',
            "stale_after_s = 5.0",
            "reopen_max_s = 2.0",
        ]
    return "\n".join(lines) + "\n"


def _line_settings(protocol: str, port: str, baud: int) -> list[str]:
    """The keys the device's transport takes: its simulator's baud and the line
    settings its family requires (the registry's line rules), a stale bound."""
    family = registry.family_for(protocol)
    transport = registry.transport_for(family, port)
    if "baud" not in transport.keys:
        return []  # a listener: no line, no stale bound
    fixed = {
        rule.setting: rule.allowed[0]
        for rule in getattr(transport, "rules", {}).get(protocol, ())
        if rule.setting not in ("baud", "xonxoff")
    }
    values = [f"baud = {baud}"] + [
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in fixed.items()
    ]
    slow = fixed.get("rtscts") is True  # a monitor sending records every 5 s
    return [v.replace("'", '"') for v in values] + [f"stale_after_s = {10.0 if slow else 3.0}"]


def ble_radio() -> tuple[SimRadio, list[ProfileSim]]:
    radio = SimRadio()
    sims = [
        radio.add(make_sim(profile, address, scenario, period))
        for _, profile, _, address, scenario, period in BLE_DEVICES
    ]
    return radio, sims


async def _wander(sim: ProfileSim, speed: float) -> None:
    """Take a sensor out of range and back, periodically."""
    while True:
        await asyncio.sleep(BLE_AWAY_EVERY_S / speed)
        sim.leave()
        await asyncio.sleep(BLE_AWAY_FOR_S / speed)
        sim.come_back()


class LiveView:
    """Latest value per bed and metric, plus the last technical events."""

    def __init__(self, max_events: int = 8) -> None:
        self.latest: dict[str, dict[str, Observation]] = {}
        self.events: deque[TechnicalEvent] = deque(maxlen=max_events)
        self.alarms: dict[tuple[str, str], AlarmEvent] = {}
        self.observations = 0
        self.color = False
        self.status = ""

    def __call__(self, record: Record) -> None:
        if isinstance(record, Observation):
            self.observations += 1
            self.latest.setdefault(record.bed_id, {})[record.metric] = record
        elif isinstance(record, TechnicalEvent):
            self.events.append(record)
        elif isinstance(record, AlarmEvent):
            key = (record.bed_id, record.rule_id)
            if record.state == "cleared":
                self.alarms.pop(key, None)
            else:
                self.alarms[key] = record

    def render(self) -> str:
        now = datetime.now(UTC).strftime("%H:%M:%S")
        out = [f"Bedside Gateway demo  {now} UTC  ({self.observations} observations)  Ctrl-C to quit", ""]
        out.append(f"{'bed':8} {'device':12} " + " ".join(f"{n:>12}" for n in SHORT_NAMES.values()))
        for bed in sorted(self.latest):
            row = self.latest[bed]
            device = next(iter(row.values())).device_id
            cells = []
            for metric in SHORT_NAMES:
                obs = row.get(metric)
                if obs is None:
                    cells.append(f"{'':>12}")
                    continue
                value = "--" if obs.value is None else f"{obs.value:g}{obs.unit}"
                mark = {"valid": "", "questionable": "?", "invalid": "!"}[obs.quality]
                cells.append(f"{value + mark:>12}")
            out.append(f"{bed:8} {device:12} " + " ".join(cells))
        out += [
            "",
            "  ? questionable   ! invalid",
            "",
            self.status,
            "",
            "alarms:  (a = acknowledge all, p = audio pause, q = quit)",
        ]
        rank = {"high": 0, "medium": 1, "low": 2}
        for alarm in sorted(self.alarms.values(), key=lambda e: (rank[e.priority], e.bed_id)):
            text = f"  {alarm.priority.upper():6} {alarm.bed_id:6} {alarm.state:12} {alarm.message} [{alarm.rule_id}]"
            out.append(f"{COLORS[alarm.priority]}{text[:110]}{RESET}" if self.color else text[:110])
        if not self.alarms:
            out.append("  none")
        out += ["", "recent technical events:"]
        for ev in self.events:
            stamp = ev.time.strftime("%H:%M:%S") if ev.time else "--:--:--"
            state = "" if ev.active else " (ended)"
            out.append(f"  {stamp} {ev.bed_id or '':6} {ev.device_id:10} {ev.kind}{state} {ev.detail}"[:110])
        return "\n".join(out)


async def _view(view: LiveView, gateway: Gateway, out: TextIO, interactive: bool) -> None:
    while True:
        await asyncio.sleep(1.0 if interactive else 5.0)
        view.status = await _path_status(gateway)
        if interactive:
            out.write("\x1b[H\x1b[2J" + view.render() + "\n")
        else:
            out.write(view.render() + "\n\n")
        out.flush()


async def _path_status(gateway: Gateway) -> str:
    """Store depth and uplink state: the rest of the path after the alarm."""
    parts = []
    if gateway.queue is not None:
        st = await gateway.queue.stats()
        parts.append(f"store: {sum(st.records.values())} records waiting ({st.fill:.1%} of budget)")
    if gateway.uplink is None:
        parts.append("uplink: offline (no broker configured)")
    else:
        state = "up" if gateway.uplink.connected else "down"
        parts.append(f"uplink: {state}, {gateway.uplink.sent_rows} batches delivered to MQTT broker")
    return "   ".join(parts)


def _keyboard(gateway: Gateway, stop: asyncio.Event) -> Callable[[], None]:
    """Single keys from the terminal: a = acknowledge all, p = audio pause, q = quit.
    Returns the function that restores the terminal."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    loop = asyncio.get_running_loop()

    def on_key() -> None:
        key = os.read(fd, 1).lower()
        if key == b"a":
            gateway.alarms.command(Ack())
        elif key == b"p":
            gateway.alarms.command(Pause())
        elif key == b"q":
            stop.set()

    loop.add_reader(fd, on_key)

    def restore() -> None:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return restore


async def _demo(workdir: Path, duration_s: float | None, speed: float) -> int:
    broker: Broker | None = None
    if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
        # A local broker with a fresh PKI, so the whole path is visible: device ->
        # alarm -> store -> broker over mutual TLS.
        broker = Broker(workdir, make_pki(workdir / "pki"))
        broker.start()
    try:
        return await _run_demo(workdir, duration_s, speed, broker)
    finally:
        if broker is not None:
            broker.stop()


async def _run_demo(workdir: Path, duration_s: float | None, speed: float, broker: Broker | None) -> int:
    ports = device_ports(workdir)
    config = parse_config(demo_config(workdir, broker, ports), "demo config")
    radio, ble_sims = ble_radio()
    gateway = Gateway(config, radio=radio.backend())
    view = LiveView()
    gateway.subscribers.append(view)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sims = [
        asyncio.create_task(simulate(replace(sim, port=ports[dev_id], time_scale=sim.time_scale * speed)))
        for dev_id, _, _, sim in DEVICES
    ]
    sims += [asyncio.create_task(sim.run(speed)) for sim in ble_sims]
    sims += [asyncio.create_task(_wander(sim, speed)) for sim in ble_sims if sim.profile == "glucose"]
    interactive = sys.stdout.isatty()
    view.color = interactive
    viewer = asyncio.create_task(_view(view, gateway, sys.stdout, interactive))
    keys = _keyboard(gateway, stop) if interactive and sys.stdin.isatty() else None
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    try:
        clean = await gateway.run(stop)
    finally:
        if keys is not None:
            keys()
    for task in [*sims, viewer]:
        task.cancel()
    await asyncio.gather(*sims, viewer, return_exceptions=True)
    print(view.render())  # the path status is the last one the view read (the store is closed now)
    print(f"\nrecords written to {workdir / 'records.jsonl'}")
    return 0 if clean and view.observations else 1


def run_demo(duration_s: float | None = None, workdir: str | None = None, speed: float = 1.0) -> int:
    with contextlib.ExitStack() as stack:
        if workdir is None:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bedside-demo-")))
        else:
            path = Path(workdir)
            path.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(path, duration_s, speed))
