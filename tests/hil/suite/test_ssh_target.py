"""`bedside hil run --target ssh://` for real: OpenSSH's sshd on 127.0.0.1 (a throwaway
host key checked strictly, one authorized key), the "box" is this machine.

What this covers: the SSH master connection and host-key check, the site config, PKI
and rules written to the box, the service commands (start, restart, kill -9, stop),
the control socket forwarded over SSH (ack, snapshot), CPU/RSS from /proc of the main
PID by a remote loop, the alarm events and sink read back from the box, the bench
device writing to a serial port wired to the box's (a socat null-modem pair of ptys
standing for two USB-serial adapters and a cable), and the faults played through the
box's shell: a partition (nftables on the box dropping the uplink to the bench broker,
here 127.0.0.2) and a full /data (fallocate on a 16 MiB tmpfs standing for /data).

What only a real box exercises: systemd as the service manager (here
hil/suite/servicectl.py stands in: no Restart=always, no watchdog), the unit's
sandbox (ProtectSystem, the bedside user), the box's firewall re-rendered from the
bench's config (here `true`: this machine's own must not change), real UARTs, and the
box's clock step (`date -s` would step this machine's clock, which the bench shares).
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.broker import free_port, start_listening, stop_process
from hil.suite.cli import DEFAULT_SUITE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
FAULTS_SUITE = DEFAULT_SUITE.with_name("faults.toml")
BROKER_HOST = "127.0.0.2"  # the bench's address as the box sees it; the partition drops only this


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """sshd on a free port of 127.0.0.1, two null-modem cables, /data as a tmpfs; the
    bench file that names them."""
    d = tmp_path_factory.mktemp("box")
    _keygen(d / "host_key")
    _keygen(d / "client_key")
    shutil.copyfile(d / "client_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PidFile none\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nAllowStreamLocalForwarding yes\n"
        "X11Forwarding no\nPrintMotd no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    sshd = start_listening(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], port, "sshd")
    host_key = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    cables = []
    for i in range(2):
        bench, box_end = d / f"ttyUSB{i}", d / f"ttyS{i}"
        cables.append(subprocess.Popen(["socat", f"pty,link={bench},raw,echo=0", f"pty,link={box_end},raw,echo=0"]))
    data = d / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "bedside-hil-box", str(data)], check=True)
    run_dir = Path(f"/tmp/bedside-box-{port}")  # a short path: the control socket
    svc = f"PYTHONPATH={ROOT} {sys.executable} -m hil.suite.servicectl --state {d}/service"
    gateway = f"-- {sys.executable} -m appliance.cli run --config {{config}}"
    (d / "bench.toml").write_text(
        f"""broker_host = "{BROKER_HOST}"
[ssh]
identity = "{d}/client_key"
known_hosts = "{d}/known_hosts"
[box]
config_path = "{d}/config/gateway.toml"
work_dir = "{data}/bedside-hil"
evidence_dir = "{run_dir}/hil"
control_socket = "{run_dir}/control.sock"
owner = "root:root"
[service]
restart = "{svc} restart {gateway}"
start = "{svc} start {gateway}"
stop = "{svc} stop"
kill = "{svc} kill"
main_pid = "{svc} main-pid"
firewall = "true"
[[cable]]
bench = "{d}/ttyUSB0"
box = "{d}/ttyS0"
[[cable]]
bench = "{d}/ttyUSB1"
box = "{d}/ttyS1"
"""
    )
    (d / "config").mkdir()
    (d / "config" / "gateway.toml").write_text("# the box's own site config\n")
    try:
        yield d
    finally:
        subprocess.run([*svc.split()[1:], "stop"], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        subprocess.run(["umount", "--lazy", str(data)], check=False)
        for proc in cables:
            proc.terminate()
            proc.wait(10)
        stop_process(sshd)
        shutil.rmtree(run_dir, ignore_errors=True)


def _hil_run(box: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", *args, "--target", "ssh://root@127.0.0.1:"
         + (box / "sshd_config").read_text().split("Port ")[1].split()[0], "--bench", str(box / "bench.toml")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _summary(report: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((report / "summary.json").read_text())
    return data


def test_the_default_suite_plays_on_a_box_over_ssh(box: Path, tmp_path: Path) -> None:
    """Ack and snapshot through the forwarded control socket, kill -9 through the
    service, local and broker latencies from the box's own evidence."""
    report = tmp_path / "report"
    res = _hil_run(
        box, str(DEFAULT_SUITE), "--scenario", "desaturation-latching-ack", "--scenario",
        "kill-9-duplicates-clock-skew", "--report", str(report),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = _summary(report)
    assert data["ok"] and data["target"] == "ssh"
    scenarios = data["scenarios"]
    assert isinstance(scenarios, list) and len(scenarios) == 2
    for sc in scenarios:
        assert sc["resources"]["rss_max_mib"] > 10, sc  # sampled from /proc of the box's MainPID
        ran = Path(sc["evidence"], "gateway.toml").read_text()  # the config the box ran
        assert "spo2-1" in ran and 'ssh_from = ["127.0.0.1/32"]' in ran  # its firewall lets the bench in
    latency = data["latency_ms"]
    assert isinstance(latency, dict) and latency["trigger_to_local_output"]["n"] >= 1
    assert latency["trigger_to_broker"]["n"] >= 1
    # The box's own config is back after the suite.
    assert (box / "config" / "gateway.toml").read_text() == "# the box's own site config\n"
    assert not (box / "config" / "gateway.toml.hil-saved").exists()


def test_partition_and_disk_full_play_through_the_box_shell(box: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = _hil_run(box, str(FAULTS_SUITE), "--report", str(report))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = _summary(report)
    details = {e["expect"]: e["detail"] for s in data["scenarios"] for e in s["expectations"]}  # type: ignore[attr-defined]
    assert any("no_alarm rule=spo2-desat at broker" in k for k in details), details  # the partition held
    assert any("store-failure" in k for k in details)
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert "bedside_hil_partition" not in nft  # healed, nothing left on the box
    assert not (box / "data" / "bedside-hil" / "hil-fill").exists()


def test_a_box_whose_host_key_is_not_known_is_refused(box: Path, tmp_path: Path) -> None:
    bench = (box / "bench.toml").read_text().replace(str(box / "known_hosts"), str(tmp_path / "empty"))
    (tmp_path / "empty").write_text("")
    (tmp_path / "bench.toml").write_text(bench)
    port = (box / "sshd_config").read_text().split("Port ")[1].split()[0]
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(DEFAULT_SUITE),
         "--scenario", "desaturation-latching-ack", "--target", f"ssh://root@127.0.0.1:{port}",
         "--bench", str(tmp_path / "bench.toml"), "--report", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Host key verification failed" in lines[0], res.stderr
    assert "Traceback" not in res.stderr
