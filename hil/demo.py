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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from appliance.config import parse_config
from appliance.gateway import Gateway
from appliance.view_text import KEYS, to_text
from hil.bench import DemoDevice, DemoEnv, FamilySim, demo_devices
from hil.broker import Broker, make_pki
from rules.engine import Ack, Pause

__all__ = ["Keys", "default_workdir", "run_demo"]


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


class Keys:
    """Single keys from the terminal: a = acknowledge all, p = audio pause, q = quit.
    Every key is confirmed by a line under the view (`notice`)."""

    def __init__(self, gateway: Gateway, stop: asyncio.Event) -> None:
        self.gateway = gateway
        self.stop = stop
        self.notice = ""

    def press(self, key: bytes) -> None:
        key = key.lower()
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        open_alarms = len(self.gateway.alarms.alarms())
        if key == b"a":
            self.gateway.alarms.command(Ack())
            self.notice = f"{stamp}  acknowledged: all alarms ({open_alarms} open)"
        elif key == b"p":
            self.gateway.alarms.command(Pause())
            pause_s = self.gateway.alarms.engine.ruleset.audio_pause_s
            self.notice = f"{stamp}  audio paused for {pause_s:.0f} s ({open_alarms} alarms open)"
        elif key == b"q":
            self.notice = f"{stamp}  quitting"
            self.stop.set()
        elif key.strip():
            self.notice = f"{stamp}  key {key.decode(errors='replace')!r} does nothing: a, p or q"

    def attach(self) -> Callable[[], None]:
        """Read keys from the terminal; returns the function that restores it."""
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, lambda: self.press(os.read(fd, 1)))

        def restore() -> None:
            loop.remove_reader(fd)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

        return restore


async def _view(gateway: Gateway, keys: Keys | None, out: TextIO, interactive: bool) -> None:
    while True:
        await asyncio.sleep(1.0 if interactive else 5.0)
        snap = gateway.view_snapshot()
        width = shutil.get_terminal_size((120, 40)).columns
        notice = keys.notice if keys else ""
        text = to_text(snap, color=interactive, width=width, keys=KEYS if keys else "", notice=notice)
        out.write(("\x1b[H\x1b[2J" if interactive else "") + text + ("" if interactive else "\n"))
        out.flush()


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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sims = [asyncio.create_task(sim.run(device, ports[device.device_id], env)) for sim, device in devices]
    interactive = sys.stdout.isatty()
    keys = Keys(gateway, stop) if interactive and sys.stdin.isatty() else None
    viewer = asyncio.create_task(_view(gateway, keys, sys.stdout, interactive))
    restore = keys.attach() if keys is not None else None
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    try:
        clean = await gateway.run(stop)
    finally:
        if restore is not None:
            restore()
    for task in [*sims, viewer]:
        task.cancel()
    await asyncio.gather(*sims, viewer, return_exceptions=True)
    observations = gateway.view.observations
    print(f"\n{observations} observations; records, alarms and the store are in {workdir}")
    return 0 if clean and observations else 1


def default_workdir() -> Path:
    """Where the demo keeps its records unless told otherwise: one folder per run."""
    return Path("demo-runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_demo(
    duration_s: float | None = None, workdir: str | None = None, speed: float = 1.0, *, keep: bool = True
) -> int:
    with contextlib.ExitStack() as stack:
        if not keep:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bedside-demo-")))
        else:
            path = Path(workdir) if workdir is not None else default_workdir()
            path.mkdir(parents=True, exist_ok=True)
            path = path.resolve()
        rc = asyncio.run(_demo(path, duration_s, speed))
        if not keep:
            print("(the run's records were discarded: --discard)")
        return rc
