"""`bedside run` with the durable queue, then `bedside queue stats|export`."""

import json
import signal

import pytest

from tests.integration.helpers import cli, gateway_toml, spawn, wait_until

pytestmark = pytest.mark.integration


def test_observations_land_in_the_encrypted_store_and_export(bench):
    tmp, procs = bench
    cfg = tmp / "gateway.toml"
    cfg.write_text(gateway_toml(tmp, "ICU-8", sink=False, queue=True, device=("masimo-1", "masimo", "masimo0")))
    gateway = spawn("run", "--config", str(cfg))
    procs.append(gateway)
    procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--rate", "8"))

    def unpaired():  # the device is not paired: its observations are the quarantine plane's (issue 21)
        res = cli("queue", "--config", str(cfg), "stats")
        return json.loads(res.stdout)["records"].get("unpaired", 0) if res.returncode == 0 else 0

    assert wait_until(lambda: unpaired() >= 50, 30)
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(10) == 0
    res = cli("queue", "--config", str(cfg), "export")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    obs = [r for r in rows if r["type"] == "observation"]
    assert len(obs) >= 50 and {o["bed_id"] for o in obs} == {"ICU-8"}
    assert {o["code"] for o in obs} >= {150456, 149530}
    assert len({o["obs_id"] for o in obs}) == len(obs)
    assert b"masimo-1" not in (tmp / "store.db").read_bytes()

    (tmp / "store.key").unlink()
    res = cli("run", "--config", str(cfg))
    assert res.returncode == 2
    assert b"key file missing for an existing store" in res.stderr and b"Traceback" not in res.stderr


def test_corrupt_store_is_moved_aside_and_the_gateway_runs(bench):
    tmp, procs = bench
    cfg = tmp / "gateway.toml"
    cfg.write_text(gateway_toml(tmp, "ICU-8", queue=True))
    (tmp / "store.key").write_bytes(bytes(32))
    (tmp / "store.key").chmod(0o600)
    (tmp / "store.db").write_bytes(b"\x00garbage, not SQLite\x00" * 500)
    gateway = spawn("run", "--config", str(cfg))
    procs.append(gateway)
    from tests.integration.helpers import records

    assert wait_until(lambda: any(r.get("kind") == "store_corrupt" for r in records(tmp / "records.jsonl")), 15), (
        gateway.stderr.read1().decode() if gateway.poll() is not None and gateway.stderr else ""
    )
    assert gateway.poll() is None
    assert list(tmp.glob("store.db.corrupt-*"))
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(10) == 0
    assert cli("queue", "--config", str(cfg), "stats").returncode == 0
