"""`bedside demo`: a whole bedside on one laptop.

Simulated devices on pseudo-terminals (with a garbage burst and a cable pull
now and then), on a loopback listener and on a simulated radio, the real gateway
reading them exactly as it would real ones, and a live terminal view of the
latest vitals per bed and the recent technical events. No broker needed: records
also go to a JSON-lines file.

The devices are the registry's families' demo devices (hil.bench.demo_devices:
each family's simulator hook says which, where and with which keys), so a new
family shows up here without an edit to this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import termios
import tty
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

from appliance.config import parse_config
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent
from appliance.gateway import Gateway
from hil.bench import DemoDevice, DemoEnv, FamilySim, demo_devices
from hil.broker import Broker, make_pki
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


def _value(value: object) -> str:
    """A TOML value: strings quoted, booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, str) else repr(value)


def device_ports(
    workdir: Path, devices: Sequence[tuple[FamilySim, DemoDevice]] | None = None, env: DemoEnv | None = None
) -> dict[str, str]:
    """Device id -> `port =`, as each family's simulator places its device (a pty in
    `workdir`, a free loopback port for a listener, a radio address)."""
    env = env or DemoEnv(workdir)
    return {device.device_id: sim.port(device, env) for sim, device in devices or demo_devices()}


def demo_config(
    workdir: Path,
    broker: Broker | None = None,
    ports: dict[str, str] | None = None,
    devices: Sequence[tuple[FamilySim, DemoDevice]] | None = None,
) -> str:
    devices = devices or demo_devices()
    ports = ports or device_ports(workdir, devices)
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
    for sim, device in devices:
        port = ports[device.device_id]
        lines += ["[[devices]]", f'id = "{device.device_id}"', f'protocol = "{device.protocol}"', f'port = "{port}"']
        lines += [f"{key} = {_value(value)}" for key, value in sim.config(device, port).items()]
        lines.append(f'bed_id = "{device.bed}"')
    return "\n".join(lines) + "\n"


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
    devices = demo_devices()
    env = DemoEnv(workdir, speed)
    ports = device_ports(workdir, devices, env)
    config = parse_config(demo_config(workdir, broker, ports, devices), "demo config")
    gateway = Gateway(config, radio=env.radio.backend())
    view = LiveView()
    gateway.subscribers.append(view)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sims = [asyncio.create_task(sim.run(device, ports[device.device_id], env)) for sim, device in devices]
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
