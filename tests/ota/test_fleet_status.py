"""`bedside ota fleet-status` against a real Mosquitto (mutual TLS 1.3, ACL): boxes'
retained status/ota as their agents make it, read back as a table, JSON or CSV, with the
rollout's progress; changes followed on a shared subscription."""

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from appliance.uplink.pki import issue, make_ca, write_key, write_pem
from hil.broker import Broker, Pki
from ota.agent import AgentConfig, AgentHooks, OtaAgent
from ota.client import Release
from ota.errors import RefusedUpdate
from ota.lifecycle import StateFile
from ota.rauc import MemoryRauc
from ota.repo import FleetRepo
from ota.rollout import RolloutPolicy, bucket
from tests.ota.conftest import COMPATIBLE

pytestmark = pytest.mark.integration
BOXES = ("gw-1", "gw-2", "gw-3", "gw-4")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    d = tmp_path_factory.mktemp("fleet-broker")
    ca = make_ca("Fleet status test CA")
    write_pem(d / "ca.pem", ca.cert)
    srv = issue(ca, "localhost", server=True, hosts=("localhost", "127.0.0.1"))
    write_pem(d / "broker.pem", srv.cert)
    write_key(d / "broker.key", srv.key)
    for name in (*BOXES, "tail"):
        leaf = issue(ca, name)
        write_pem(d / f"{name}.pem", leaf.cert)
        write_key(d / f"{name}.key", leaf.key)
    b = Broker(d, Pki(d, str(d / "ca.pem")))
    b.start()
    yield b
    b.stop()


def connect(broker: Broker, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{time.monotonic_ns()}",
                    protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
    d = broker.pki.dir
    c.tls_set(ca_certs=broker.pki.ca, certfile=str(d / f"{name}.pem"), keyfile=str(d / f"{name}.key"),
              tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def publish_status(broker: Broker, name: str, payload: dict[str, object], leaf: str = "status/ota") -> None:
    c = connect(broker, name)
    try:
        c.publish(f"bedside/v1/{name}/{leaf}", json.dumps(payload), qos=1, retain=True).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


async def agent_status(tmp: Path, name: str, *, refuse: bool = False) -> dict[str, object]:
    """The retained payload a box's agent leaves after one poll of release 1.1.0."""
    statuses: list[dict[str, object]] = []
    rauc = MemoryRauc()

    class Source:
        def check(self):
            return [Release("bedside-test/1.1.0/b.raucb", "1.1.0", COMPATIBLE, "", 5)]

        def download(self, release):
            if refuse:
                raise RefusedUpdate("tampered", "hash mismatch")
            path = tmp / f"{name}.raucb"
            path.write_text("1.1.0")
            return path

    async def reboot():
        rauc.reboot()

    def agent() -> OtaAgent:
        hooks = AgentHooks(lambda: False, {}, reboot, lambda *a: None, statuses.append)
        cfg = AgentConfig(COMPATIBLE, "1.0.0", name, health_timeout_s=0.1)
        return OtaAgent(cfg, Source(), rauc, StateFile(tmp / name / "ota.json"), hooks)

    first = agent()
    await first.resume()
    await first.cycle()
    if not refuse:
        await agent().resume()  # back up in slot B: committed
    return statuses[-1]


def bedside(*args, **kw):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, check=False,
                          **kw)  # fmt: skip


def status_cmd(broker: Broker, *extra: str) -> list[str]:
    d = broker.pki.dir
    return [sys.executable, "-m", "appliance.cli", "ota", "fleet-status", "--broker", f"127.0.0.1:{broker.port}",
            "--ca", broker.pki.ca, "--cert", str(d / "tail.pem"), "--key", str(d / "tail.key"), "--settle", "0.5",
            *extra]  # fmt: skip


async def test_fleet_status_lists_every_box_and_the_rollout_progress(tmp_path, broker, fleet: FleetRepo):
    publish_status(broker, "gw-1", await agent_status(tmp_path, "gw-1"))
    publish_status(broker, "gw-1", {"state": "online", "time": 1, "payload_version": 4}, leaf="status")
    publish_status(broker, "gw-2", await agent_status(tmp_path, "gw-2", refuse=True))
    publish_status(broker, "gw-3", {"state": "idle", "release": "", "installed": "1.0.0", "slot": "A", "error": "",
                                    "given_up": []})  # fmt: skip
    bundle = tmp_path / "b.raucb"
    bundle.write_bytes(b"1.1.0")
    fleet.add_release(bundle, "1.1.0", COMPATIBLE, rollout=RolloutPolicy(percent=60))
    res = subprocess.run(status_cmd(broker, "--format", "json", "--dir", str(fleet.fleet)), capture_output=True,
                         text=True, check=False, timeout=30)  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    rows = {r["gateway"]: r for r in map(json.loads, lines[:-1])}
    assert set(rows) >= {"gw-1", "gw-2", "gw-3"}
    want = {"gateway": "gw-1", "online": "online", "installed": "1.1.0", "slot": "B", "state": "committed",
            "release": "1.1.0", "error": "", "given_up": []}  # fmt: skip
    assert rows["gw-1"] == want
    assert rows["gw-2"]["state"] == "failed" and rows["gw-2"]["error"] == "tampered" and rows["gw-2"]["slot"] == "A"
    offered = sum(bucket(g) < 60 for g in rows)
    assert lines[-1] == (f"bedside-test/1.1.0/b.raucb: rollout 60 %, offered to {offered} of {len(rows)} boxes "
                         "seen; running 1, updating 0, failed 1")  # fmt: skip
    table = subprocess.run(status_cmd(broker), capture_output=True, text=True, check=True, timeout=30).stdout
    assert table.splitlines()[0].split() == ["gateway", "online", "installed", "slot", "state", "release", "error"]
    csv = subprocess.run(status_cmd(broker, "--format", "csv"), capture_output=True, text=True, check=True).stdout
    assert "gw-3,,1.0.0,A,idle,,," in csv


def test_follow_prints_changes_from_the_shared_subscription(broker):
    proc = subprocess.Popen(status_cmd(broker, "--follow", "3", "--format", "json"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.5)  # past the snapshot
    publish_status(broker, "gw-4", {"state": "downloading", "release": "1.1.0", "installed": "1.0.0", "slot": "A"})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    change = json.loads(out.splitlines()[0])
    assert change["gateway"] == "gw-4" and change["state"] == "downloading"


def test_bad_arguments_are_one_line(tmp_path, broker):
    d = broker.pki.dir
    res = bedside("ota", "fleet-status", "--broker", "nohost", "--ca", broker.pki.ca, "--cert", str(d / "tail.pem"),
                  "--key", str(d / "tail.key"))  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "give HOST:PORT" in res.stderr
    res = bedside("ota", "fleet-status", "--broker", f"127.0.0.1:{broker.port}", "--ca", broker.pki.ca,
                  "--cert", str(tmp_path / "none.pem"), "--key", str(d / "tail.key"))  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "none.pem: no such file" in res.stderr
