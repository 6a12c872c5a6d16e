"""`bedside ota` on the fleet host, and the agent running inside a real gateway."""

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from appliance.core.model import Record, TechnicalEvent
from appliance.gateway import Gateway
from hil.rauc_bench import RaucSystem, build_bundle
from ota.lifecycle import StateFile
from ota.service import agent_for, blocking_alarm
from rules.outputs import MemoryOutput
from tests.integration.helpers import until
from tests.ota.conftest import COMPATIBLE, HOST_FORMAT

pytestmark = pytest.mark.integration


def bedside(*args):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, check=False)


def test_fleet_commands_make_keys_publish_and_refresh(tmp_path):
    fleet = tmp_path / "fleet"
    res = bedside("ota", "keys", "--dir", str(fleet), "--compatible", COMPATIBLE, "--root-keys", "3",
                  "--root-threshold", "2")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(list((fleet / "keys").glob("root-*.pem"))) == 3
    bundle = build_bundle(
        tmp_path / "b.raucb", compatible=COMPATIBLE, version="1.1.0", cert=fleet / "rauc" / "signing.pem",
        key=fleet / "rauc" / "signing.key", keyring=fleet / "rauc" / "ca.pem",
    )  # fmt: skip
    res = bedside("ota", "publish", str(bundle), "--dir", str(fleet), "--version", "1.1.0", "--compatible", COMPATIBLE)
    assert res.returncode == 0 and "published bedside-test/1.1.0/b.raucb" in res.stdout
    res = bedside("ota", "refresh-timestamp", "--dir", str(fleet))
    assert res.returncode == 0 and res.stdout.startswith("timestamp v3,")
    bad = bedside("ota", "publish", str(bundle), "--dir", str(fleet), "--version", "one", "--compatible", COMPATIBLE)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a release version" in bad.stderr
    again = bedside("ota", "keys", "--dir", str(fleet), "--compatible", COMPATIBLE)
    assert again.returncode == 2 and "exists already" in again.stderr


def test_ota_config_errors_name_the_key():
    base = '[gateway]\nbed_id = "b"\n[ota]\n'
    with pytest.raises(ConfigError, match=r"ota.server_url: must be an https:// URL"):
        parse_config(base + 'server_url = "http://fleet"\ncompatible = "x"\n', "g.toml")
    with pytest.raises(ConfigError, match=r"ota.compatible: required"):
        parse_config(base + 'server_url = "https://fleet"\n', "g.toml")
    with pytest.raises(ConfigError, match=r"ota.ca_path: required"):
        parse_config(base + 'server_url = "https://fleet"\ncompatible = "x"\n', "g.toml")


def test_only_high_and_medium_alarms_block_a_reboot():
    assert blocking_alarm([{"priority": "medium", "state": "acknowledged"}])
    assert not blocking_alarm([{"priority": "low", "state": "active"}])
    assert not blocking_alarm([])


async def test_the_agent_runs_inside_the_gateway_and_reports_every_step(tmp_path, fleet, server, pki):
    rauc = RaucSystem(tmp_path / "rauc", COMPATIBLE, fleet.fleet / "rauc" / "ca.pem")
    rauc.setup()
    try:
        bundle = build_bundle(
            tmp_path / "b.raucb", compatible=COMPATIBLE, version="1.1.0", cert=fleet.fleet / "rauc" / "signing.pem",
            key=fleet.fleet / "rauc" / "signing.key", keyring=fleet.fleet / "rauc" / "ca.pem",
            bundle_format=HOST_FORMAT,
        )  # fmt: skip
        fleet.publish(bundle, "1.1.0", COMPATIBLE)
        root = tmp_path / "image-root.json"
        shutil.copyfile(fleet.meta_dir / "1.root.json", root)
        gw_files = pki.client("gw-1")
        text = f"""
[gateway]
bed_id = "ICU-1"
registry_path = "{tmp_path / "registry.json"}"
[queue]
path = "{tmp_path / "store.db"}"
key_path = "{tmp_path / "store.key"}"
[ota]
server_url = "{server.url}"
compatible = "{COMPATIBLE}"
base_version = "1.0.0"
data_dir = "{tmp_path / "ota"}"
root_path = "{root}"
rauc_bus_address = "{rauc.address}"
health_timeout_s = 5.0
ca_path = "{gw_files.ca}"
cert_path = "{gw_files.cert}"
key_path = "{gw_files.key}"
"""
        gateway = Gateway(parse_config(text, "g.toml"), outputs=[MemoryOutput("m")])
        seen: list[Record] = []
        gateway.subscribers.append(seen.append)
        rebooted = asyncio.Event()

        async def reboot():
            await asyncio.to_thread(rauc.boot)
            rebooted.set()
            await asyncio.sleep(3600)  # the process would end here

        gateway.tasks["ota"] = agent_for(gateway, reboot).run
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(rebooted.wait(), 60)
        stop.set()
        assert await run
        assert rauc.booted == "B" and rauc.slot_release("B") == "1.1.0"
        steps = [e.detail.split()[0] for e in seen if isinstance(e, TechnicalEvent) and e.kind == "update"]
        assert steps == ["checking", "downloading", "verified", "installing", "installed", "rebooting"]

        # The gateway comes up in slot B: the agent finds REBOOTING, runs the health gate, commits.
        second = Gateway(parse_config(text, "g.toml"), outputs=[MemoryOutput("m")])
        later: list[Record] = []
        second.subscribers.append(later.append)
        second.tasks["ota"] = agent_for(second, reboot).run
        stop = asyncio.Event()
        run = asyncio.create_task(second.run(stop))

        def committed() -> bool:
            return any(isinstance(e, TechnicalEvent) and e.detail.startswith("committed 1.1.0") for e in later)

        await until(committed, 30)
        stop.set()
        assert await run
        assert (rauc.state / "state.B").read_text().strip() == "good"  # mark-good reached the bootloader
        assert StateFile(tmp_path / "ota" / "ota.json").load().boot_attempts == {"1.1.0": 1}
    finally:
        rauc.teardown()


def test_status_command_prints_the_record(tmp_path):
    (tmp_path / "ota").mkdir()
    res = bedside("ota", "status", "--data-dir", str(tmp_path / "ota"))
    assert res.returncode == 0 and '"state": "idle"' in res.stdout
    assert Path(tmp_path / "ota").exists()


def test_provision_makes_a_private_key_and_csr_once(tmp_path):
    import stat

    from cryptography import x509

    res = bedside("ota", "provision", "--dir", str(tmp_path / "keys"), "--cn", "box-1")
    assert res.returncode == 0, res.stderr
    key = tmp_path / "keys" / "box.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    csr = x509.load_pem_x509_csr((tmp_path / "keys" / "box.csr").read_bytes())
    assert csr.is_signature_valid and "box-1" in csr.subject.rfc4514_string()
    before = key.read_bytes()
    again = bedside("ota", "provision", "--dir", str(tmp_path / "keys"))
    assert again.returncode == 0 and "kept existing" in again.stdout and key.read_bytes() == before


def test_fleet_keys_into_an_unusable_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = bedside("ota", "keys", "--dir", str(blocker / "fleet"), "--compatible", COMPATIBLE)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
