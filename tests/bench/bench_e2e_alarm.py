"""End-to-end alert latency: device byte -> alarm event at the broker, with the durable
store and the MQTT uplink in the path and the bedside load running.

Run: .venv/bin/python -m tests.bench.bench_e2e_alarm [--samples N]

The gateway runs in this process (one clock for every timestamp) with the queue, the
uplink (MQTT 5, mutual TLS 1.3) to a real Mosquitto on loopback and the JSON-lines
sink. Load: the measured oximeter plus 7 further serial devices at line rate (4 Masimo
rad7 lines at 8/s, 3 Nonin format #2; `bedside hil simulate` in their own processes),
so 8 serial devices, and 4 BLE sensors (heart rate, continuous SpO2, thermometer, blood
pressure) on the simulated radio read through bleak. The hospital side is a consumer
with its own certificate (CN=tail). Each onset is a desaturation (SpO2 70) written on
the measured pty after a normal line; the latched alarm is acknowledged before the next.
Three times per onset:

- trigger -> local output: the output chain told to sound high (annunciate());
- trigger -> broker: the consumer's on_message for the new alarm's `active` event;
- the floors, measured in the same run under the same load: a bare pty write -> read on
  the gateway's loop, and a QoS 1 publish -> delivery round trip through the same broker
  from a second client (CN=gw-2) to the consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import gmqtt

from appliance.config import parse_config
from appliance.gateway import Gateway
from appliance.queue.records import decode_batch
from appliance.sdnotify import Notifier
from appliance.uplink.envelope import batches_of
from appliance.uplink.gmqtt_adapter import close_client
from appliance.uplink.tls import client_context
from hil.broker import Broker, make_pki
from rules.engine import Ack
from rules.spec import DEFAULT_RULES_PATH, load_rules
from tests.bench.bench_alarm_latency import BED, LINE_RATE_HZ, Floor, SignallingOutput, line, pct
from tests.bench.disk import disk_tempdir

LOAD_MASIMO = 4
LOAD_NONIN = 3
BLE = (("heart-rate", "ICU-2"), ("plx-continuous", "ICU-3"), ("temperature", "ICU-4"), ("blood-pressure", "ICU-5"))


class HospitalSide:
    """The consumer: the time each new desaturation alarm arrives; the floor's echoes."""

    def __init__(self) -> None:
        self.client = gmqtt.Client("bench-tail", clean_session=True)
        self.client.on_message = self._on_message
        self.seen: set[str] = set()
        self.alarm: asyncio.Queue[float] = asyncio.Queue()
        self.echo: asyncio.Queue[float] = asyncio.Queue()

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        now = time.perf_counter()
        if topic.endswith("/floor"):
            self.echo.put_nowait(now)
        elif topic.endswith("/alarms"):
            for batch in batches_of(cbor2.loads(payload)):
                for rec in decode_batch(batch):
                    alarm_id = getattr(rec, "alarm_id", None)
                    if getattr(rec, "state", "") == "active" and alarm_id not in self.seen:
                        self.seen.add(str(alarm_id))
                        if rec.rule_id == "spo2-desat":  # type: ignore[union-attr]
                            self.alarm.put_nowait(now)
        return 0


def _config(workdir: Path, broker: Broker) -> str:
    files = broker.pki.client("gw-1")
    devices = [f'[[devices]]\nid = "measured"\nprotocol = "masimo"\nport = "{workdir / "measured"}"\n']
    for i in range(LOAD_MASIMO + LOAD_NONIN):
        protocol = "masimo" if i < LOAD_MASIMO else "nonin-2"
        devices.append(f'[[devices]]\nid = "load{i}"\nprotocol = "{protocol}"\nport = "{workdir / f"load{i}"}"\n')
    for n, (profile, bed) in enumerate(BLE):
        devices.append(
            f'[[devices]]\nid = "ble{n}"\nprotocol = "ble-{profile}"\nport = "ble:C0:FF:EE:00:10:0{n}"\n'
            f'bed_id = "{bed}"\nstale_after_s = 5.0\n'
        )
    return (
        f'[gateway]\nbed_id = "{BED}"\nregistry_path = "{workdir / "reg.json"}"\nlog_level = "warning"\n'
        f'[sink]\njsonl_path = "{workdir / "records.jsonl"}"\n'
        f'[queue]\npath = "{workdir / "store.db"}"\nkey_path = "{workdir / "store.key"}"\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker.port}\nserver_hostname = "localhost"\ngateway_id = "gw-1"\n'
        f'ca_path = "{files.ca}"\ncert_path = "{files.cert}"\nkey_path = "{files.key}"\n'
        '[arbiter.precedence]\nMDC_PULS_OXIM_SAT_O2 = ["measured"]\n' + "".join(devices)
    )


def _load(workdir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(LOAD_MASIMO + LOAD_NONIN):
        extra = ["--rate", str(LINE_RATE_HZ), "--variant", "rad7"] if i < LOAD_MASIMO else ["--format", "2"]
        family = "masimo" if i < LOAD_MASIMO else "nonin"
        cmd = [sys.executable, "-m", "appliance.cli", "hil", "simulate", family, "--port", str(workdir / f"load{i}")]
        procs.append(subprocess.Popen([*cmd, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


async def _broker_floor(publisher: Any, side: HospitalSide) -> float:
    t0 = time.perf_counter()
    publisher.publish("bedside/v1/gw-2/floor", b"x" * 64, qos=1)
    return await asyncio.wait_for(side.echo.get(), 5) - t0


async def _onsets(
    gw: Gateway, port: Any, out: SignallingOutput, side: HospitalSide, publisher: Any, n: int
) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {"local": [], "broker": [], "pty_floor": [], "broker_floor": []}
    floor = Floor()
    try:
        for _ in range(n):
            port.write(line(97))
            await asyncio.sleep(0.05)
            gw.alarms.command(Ack(BED))  # the latched desaturation and anything else sounding
            await asyncio.sleep(0.05)
            out.arrived.clear()
            port.write(line(70))
            t0 = time.perf_counter()
            await asyncio.wait_for(out.arrived.wait(), 5)
            got["local"].append(out.sounded_at - t0)
            got["broker"].append(await asyncio.wait_for(side.alarm.get(), 10) - t0)
            got["pty_floor"].append(await floor.sample())
            got["broker_floor"].append(await _broker_floor(publisher, side))
    finally:
        floor.close()
    return got


def _ble_observations(workdir: Path) -> int:
    """Observations from the BLE sensors in the sink: the radio load was really there."""
    text = (workdir / "records.jsonl").read_text() if (workdir / "records.jsonl").exists() else ""
    return sum(1 for row in text.splitlines() if '"device_id":"ble' in row and '"type":"observation"' in row)


async def e2e_latency(workdir: Path, samples: int) -> tuple[dict[str, list[float]], int, int]:
    from hil.ble_radio import SimRadio
    from hil.ble_sim import make_sim
    from hil.simulate import PtyPort

    broker = Broker(workdir, make_pki(workdir / "pki"))
    broker.start()
    port = PtyPort(workdir / "measured")
    port.open()
    radio = SimRadio()
    sensors = [
        asyncio.create_task(radio.add(make_sim(p, f"C0:FF:EE:00:10:0{n}", "steady", 1.0)).run(1.0))
        for n, (p, _) in enumerate(BLE)
    ]
    out = SignallingOutput()
    cfg = parse_config(_config(workdir, broker))
    gw = Gateway(
        cfg, notifier=Notifier({}), ruleset=load_rules(DEFAULT_RULES_PATH), outputs=[out], radio=radio.backend()
    )
    load = _load(workdir)
    side = HospitalSide()
    publisher = gmqtt.Client("bench-floor")
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        await side.client.connect("127.0.0.1", broker.port, ssl=client_context(broker.pki.client("tail")))
        side.client.subscribe("bedside/#", qos=1)
        await publisher.connect("127.0.0.1", broker.port, ssl=client_context(broker.pki.client("gw-2")))
        deadline = time.monotonic() + 30
        while not all(link.connected for link in gw.links.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # load flowing, the uplink connected and drained
        start = gw.counts["observation"]
        got = await _onsets(gw, port, out, side, publisher, samples)
        return got, gw.counts["observation"] - start, _ble_observations(workdir)
    finally:
        stop.set()
        await runner
        for task in sensors:
            task.cancel()
        await asyncio.gather(*sensors, return_exceptions=True)
        for client in (side.client, publisher):
            await close_client(client)
        for p in load:
            p.terminate()
            p.wait(5)
        port.close()
        broker.stop()


async def measure(samples: int) -> dict[str, float]:
    with disk_tempdir(prefix="bedside-e2e-") as tmp:
        got, load_obs, ble_obs = await e2e_latency(Path(tmp), samples)
    out: dict[str, float] = {"samples": samples, "load_observations": load_obs, "ble_observations": ble_obs}
    for name, values in got.items():
        for q in (50, 95, 99):
            out[f"{name}_p{q}_ms"] = pct(values, q / 100) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    import uvloop

    r = uvloop.run(measure(args.samples))
    print(
        f"end-to-end alarm latency over {args.samples} onsets; 8 serial devices at line rate + 4 BLE sensors "
        f"({r['load_observations']:.0f} observations meanwhile, {r['ble_observations']:.0f} from BLE), "
        "store and uplink in the path:"
    )
    for name, label in (
        ("local", "device byte -> local output (annunciate high)"),
        ("broker", "device byte -> alarm at the broker consumer"),
        ("pty_floor", "floor: bare pty write -> read, same loop"),
        ("broker_floor", "floor: QoS 1 publish -> delivery, same broker"),
    ):
        p50, p95, p99 = (r[f"{name}_p{q}_ms"] for q in (50, 95, 99))
        print(f"  {label}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
