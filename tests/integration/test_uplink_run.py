"""simulator -> pty -> `bedside run` (queue + uplink) -> Mosquitto (mTLS 1.3) -> subscriber."""

import asyncio
import json
import signal

import pytest

from tests.integration.helpers import gateway_toml, records, spawn, wait_until
from tests.integration.test_uplink_e2e import Subscriber

pytestmark = pytest.mark.integration


def config(tmp, broker, pki, cert: str, key: str) -> str:
    uplink = (
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker.port}\nserver_hostname = "localhost"\n'
        f'gateway_id = "gw-1"\nca_path = "{pki.ca}"\ncert_path = "{cert}"\nkey_path = "{key}"\n'
        "connect_timeout_s = 3.0\n"
    )
    return gateway_toml(tmp, "ICU-2", queue=True, sections=uplink, device=("masimo-1", "masimo", "masimo0"))


async def test_device_values_reach_the_broker(bench, broker, pki):
    tmp, procs = bench
    files = pki.client("gw-1")
    (tmp / "gw.toml").write_text(config(tmp, broker, pki, files.cert, files.key))
    sub = Subscriber()
    await sub.start(broker, pki)
    try:
        procs.append(spawn("run", "--config", str(tmp / "gw.toml")))
        procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--rate", "4"))
        async with asyncio.timeout(30):
            while len(sub.records()) < 20:
                await asyncio.sleep(0.1)
        obs = [r for r in sub.records() if getattr(r, "metric", None) == "MDC_PULS_OXIM_SAT_O2"]
        assert obs and all(o.bed_id == "ICU-2" and o.device_id == "masimo-1" for o in obs)
        assert all(90 <= o.value <= 100 for o in obs)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(10) == 0
    finally:
        await sub.stop()


def test_expired_certificate_keeps_the_uplink_off_and_the_gateway_running(bench, broker, pki):
    tmp, procs = bench
    (tmp / "rules.toml").write_text(
        '[[rule]]\nid = "uplink"\nkind = "technical"\nevent = "uplink_down"\npriority = "low"\n'
        '[[rule]]\nid = "spo2-any"\nkind = "limit"\nmetric = "MDC_PULS_OXIM_SAT_O2"\nbelow = 101.0\npriority = "high"\n'
    )
    text = config(tmp, broker, pki, str(pki.dir / "expired.pem"), str(pki.dir / "expired.key"))
    text = text.replace(
        "[[devices]]",
        f'[alarms]\nrules_path = "{tmp / "rules.toml"}"\ncontrol_socket = "{tmp / "ctl.sock"}"\n\n[[devices]]',
    )
    (tmp / "gw.toml").write_text(text)
    gateway = spawn("run", "--config", str(tmp / "gw.toml"))
    procs.append(gateway)
    procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--rate", "4"))

    def down_reasons():
        return [r["detail"] for r in records(tmp / "records.jsonl") if r.get("kind") == "uplink_down" and r["active"]]

    assert wait_until(lambda: any("expired on" in d for d in down_reasons()), 20), down_reasons()
    # Still decoding, still storing: only the uplink is off.
    assert wait_until(lambda: sum(r["type"] == "observation" for r in records(tmp / "records.jsonl")) > 10, 20)
    assert gateway.poll() is None
    # Alarms work while the uplink is refused: a physiological one and the technical uplink alarm.
    from tests.integration.helpers import cli

    def alarms() -> str:
        res = cli("alarm", "--socket", str(tmp / "ctl.sock"), "list")
        return res.stdout.decode() if res.returncode == 0 else ""

    assert wait_until(lambda: "high\tactive\tspo2-any" in alarms() and "low\tactive\tuplink" in alarms(), 15)
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(10) == 0
    stored = json.loads(
        __import__("subprocess").run(
            [__import__("sys").executable, "-m", "appliance.cli", "queue", "--config", str(tmp / "gw.toml"), "stats"],
            capture_output=True, check=True,
        ).stdout
    )  # fmt: skip
    assert stored["records"].get("unpaired", 0) > 10  # an unpaired device: the quarantine plane (issue 21)


def test_uplink_tail_prints_deduplicated_json_lines(bench, broker, pki):
    import subprocess
    import sys

    tmp, procs = bench
    files = pki.client("gw-1")
    (tmp / "gw.toml").write_text(config(tmp, broker, pki, files.cert, files.key))
    tail_files = pki.client("tail")
    tail = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "uplink", "tail", "--config", str(tmp / "gw.toml"),
         "--cert", tail_files.cert, "--key", tail_files.key, "--count", "15", "--duration", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    procs.append(tail)
    import time

    time.sleep(1.0)  # subscribed before the gateway starts publishing
    procs.append(spawn("run", "--config", str(tmp / "gw.toml")))
    procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--rate", "4"))
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) >= 15 and b"records" in err
    obs = [x for x in lines if x["type"] == "observation"]
    assert obs and len({o["obs_id"] for o in obs}) == len(obs)
    assert {o["bed_id"] for o in obs} == {"ICU-2"}

    # Values intact: every record the consumer printed is the one the gateway decoded.
    # The JSON-lines sink writes in batches: wait until it holds what the broker carried.
    def local_obs() -> dict[str, dict[str, object]]:
        return {r["obs_id"]: r for r in records(tmp / "records.jsonl") if r["type"] == "observation"}

    assert wait_until(lambda: {o["obs_id"] for o in obs} <= set(local_obs()), 10)
    local = local_obs()
    for o in obs:
        mine = local[o["obs_id"]]
        for key in ("metric", "code", "value", "unit", "quality", "time", "device_id", "flags", "quarantine"):
            assert o[key] == mine[key], key


async def retained_status(broker, pki, topic: str) -> dict[str, object]:
    """What a consumer arriving now reads on `topic` (retained)."""
    import gmqtt

    from appliance.uplink.gmqtt_adapter import close_client
    from appliance.uplink.tls import client_context

    got: asyncio.Queue[bytes] = asyncio.Queue()
    client = gmqtt.Client("status-reader")

    def on_message(client: object, topic: str, payload: bytes, qos: int, props: object) -> int:
        got.put_nowait(payload)
        return 0

    client.on_message = on_message
    await client.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
    try:
        client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(5):
                return dict(json.loads(await got.get()))
        except TimeoutError:
            return {}  # nothing retained yet
    finally:
        await close_client(client)


async def test_sigterm_leaves_the_retained_status_offline_with_a_reason(bench, broker, pki):
    """systemd stops, reboots and OTA all end in SIGTERM: a late consumer must not read
    "online" from a gateway that stopped cleanly."""
    tmp, procs = bench
    files = pki.client("gw-1")
    (tmp / "gw.toml").write_text(config(tmp, broker, pki, files.cert, files.key))
    procs.append(spawn("run", "--config", str(tmp / "gw.toml")))
    deadline = asyncio.get_running_loop().time() + 30
    while (await retained_status(broker, pki, "bedside/v1/gw-1/status")).get("state") != "online":
        assert asyncio.get_running_loop().time() < deadline, "never online"
        await asyncio.sleep(0.3)
    procs[0].send_signal(signal.SIGTERM)
    assert procs[0].wait(15) == 0
    status = await retained_status(broker, pki, "bedside/v1/gw-1/status")
    assert status["state"] == "offline" and status["reason"] == "stopped", status
