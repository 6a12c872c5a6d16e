"""The box's firewall: rules derived from the site config (pure), and the ruleset loaded
by `bedside firewall --apply` into a real kernel's nftables, in network namespaces this
test creates (a "box" and a "bench" joined by a veth pair): what the config enables
connects, anything else is dropped (a connect times out), both directions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from appliance.firewall import Opening, base_ruleset, openings, render

BED = '[gateway]\nbed_id = "ICU-1"\nregistry_path = "{reg}"\n'


def _config(tmp_path: Path, extra: str) -> str:
    return BED.format(reg=tmp_path / "r.json") + extra


def test_openings_name_the_keys_they_come_from(tmp_path: Path) -> None:
    text = _config(
        tmp_path,
        textwrap.dedent("""
        [uplink]
        host = "10.0.0.5"
        port = 8884
        gateway_id = "gw"
        ca_path = "ca.pem"
        cert_path = "c.pem"
        key_path = "k.pem"
        [queue]
        path = "q.db"
        key_path = "q.key"
        [ota]
        server_url = "https://fleet.example:8443/repo"
        compatible = "x"
        root_path = "root.json"
        ca_path = "ca.pem"
        cert_path = "c.pem"
        key_path = "k.pem"
        [firewall]
        ssh_from = ["10.20.0.0/24", "fd00::/64"]
        outbound = ["syslog.example:6514"]
        [[devices]]
        id = "hl7-1"
        protocol = "hl7"
        port = "tcp://10.1.2.3:2575"
        [[devices]]
        id = "m1"
        protocol = "masimo"
        port = "/dev/ttyUSB0"
    """),
    )
    found = openings(parse_config(text, "g.toml"))
    assert Opening("in", 2575, "10.1.2.3", why="devices.hl7-1.port") in found
    assert Opening("in", 22, sources=("10.20.0.0/24", "fd00::/64"), why="firewall.ssh_from") in found
    assert Opening("out", 8884, "10.0.0.5", why="uplink.host") in found
    assert Opening("out", 8443, "", why="ota.server_url") in found  # a name: by port (resolved at connect time)
    assert Opening("out", 6514, "", why="firewall.outbound[0]") in found
    assert len(found) == 5  # the serial device opens nothing
    ruleset = render(found)
    assert 'ip saddr 10.20.0.0/24 tcp dport 22 accept comment "firewall.ssh_from"' in ruleset
    assert 'ip6 saddr fd00::/64 tcp dport 22 accept comment "firewall.ssh_from"' in ruleset
    assert 'ip daddr 10.1.2.3 tcp dport 2575 accept comment "devices.hl7-1.port"' in ruleset


def test_ntp_goes_only_to_the_sites_servers(tmp_path: Path) -> None:
    text = _config(tmp_path, '[time]\nntp_servers = ["10.20.0.5", "ntp.hospital.example", "fd00::123"]\n')
    found = openings(parse_config(text, "g.toml"))
    assert found == [
        Opening("out", 123, "10.20.0.5", why="time.ntp_servers[0]", proto="udp"),
        Opening("out", 123, "", why="time.ntp_servers[1]", proto="udp"),  # a name: resolved at run time
        Opening("out", 123, "fd00::123", why="time.ntp_servers[2]", proto="udp"),
    ]
    ruleset = render(found)
    assert 'ip daddr 10.20.0.5 udp dport 123 accept comment "time.ntp_servers[0]"' in ruleset
    assert 'ip6 daddr fd00::123 udp dport 123 accept comment "time.ntp_servers[2]"' in ruleset
    # No servers configured, or no site config at all: no NTP anywhere.
    assert "dport 123" not in render(openings(parse_config(_config(tmp_path, ""), "g.toml")))
    assert "dport 123" not in base_ruleset()


def test_no_ssh_and_no_listeners_by_default(tmp_path: Path) -> None:
    assert openings(parse_config(_config(tmp_path, ""), "g.toml")) == []
    assert "dport 22" not in base_ruleset()
    assert "policy drop" in base_ruleset()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('[firewall]\nssh_from = ["10.20.0.0/33"]\n', "firewall.ssh_from[0]"),
        ('[firewall]\nssh_from = "10.20.0.0/24"\n', "firewall.ssh_from"),
        ('[firewall]\noutbound = ["syslog.example"]\n', "firewall.outbound[0]"),
        ("[firewall]\noutbond = []\n", "firewall.outbond"),
    ],
)
def test_bad_firewall_settings_are_one_line_naming_the_key(tmp_path: Path, section: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(tmp_path, section), "g.toml")
    assert f"g.toml: {key}:" in str(err.value) and "\n" not in str(err.value)


_SERVE = """
import socket, sys, time
socks = []
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); socks.append(s)
print("ready", flush=True)
time.sleep(120)
"""
_CONNECT = """
import socket, sys
host, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(); s.settimeout(1.5)
if source:
    s.bind((source, 0))
try:
    s.connect((host, port)); print("open")
except socket.timeout:
    print("dropped")
except OSError as exc:
    print("refused" if isinstance(exc, ConnectionRefusedError) else f"error {exc}")
"""


class Net:
    """Two namespaces: box 10.199.0.1, bench 10.199.0.2 and 10.199.1.2 (outside ssh_from)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.box, self.bench = f"bsfw-box-{tag}", f"bsfw-bench-{tag}"
        self.servers: list[subprocess.Popen[str]] = []

    def sh(self, *cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def up(self) -> None:
        for ns in (self.box, self.bench):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sh("ip", "link", "add", "bsfw0", "netns", self.box, "type", "veth", "peer", "bsfw1", "netns", self.bench)
        self.sh("ip", "-n", self.box, "addr", "add", "10.199.0.1/16", "dev", "bsfw0")
        self.sh("ip", "-n", self.bench, "addr", "add", "10.199.0.2/16", "dev", "bsfw1")
        self.sh("ip", "-n", self.bench, "addr", "add", "10.199.1.2/16", "dev", "bsfw1")
        for ns, dev in ((self.box, "bsfw0"), (self.bench, "bsfw1")):
            self.sh("ip", "-n", ns, "link", "set", dev, "up")

    def serve(self, ns: str, *ports: int) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _SERVE, *map(str, ports)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def connect(self, ns: str, host: str, port: int, source: str = "") -> str:
        res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _CONNECT, host, str(port), source],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return res.stdout.strip()

    def bedside(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["ip", "netns", "exec", ns, str(Path(sys.executable).parent / "bedside"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[2])

    def down(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for ns in (self.box, self.bench):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture
def net() -> Iterator[Net]:
    # Root, nftables and iproute2: tools/bootstrap test installs them (a missing one fails here).
    assert os.geteuid() == 0 and shutil.which("nft") and shutil.which("ip"), "needs root, nft (nftables), ip"
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_applied_ruleset_opens_only_what_the_config_enables(net: Net, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        _config(
            tmp_path,
            textwrap.dedent("""
        [firewall]
        ssh_from = ["10.199.0.0/24"]
        outbound = ["10.199.0.2:8883"]
        [[devices]]
        id = "hl7-1"
        protocol = "hl7"
        port = "tcp://10.199.0.1:2575"
    """),
        )
    )
    net.serve(net.box, 2575, 22, 2600)  # the listener, SSH, and a port nothing enabled
    net.serve(net.bench, 8883, 9000)  # the broker, and something else on the bench
    # Before: everything is reachable (no firewall in a fresh namespace).
    assert net.connect(net.bench, "10.199.0.1", 2600) == "open"

    applied = net.bedside(net.box, "firewall", "--apply", "--config", str(config))
    assert applied.returncode == 0, applied.stderr

    assert net.connect(net.bench, "10.199.0.1", 2575) == "open"  # the enabled listener
    assert net.connect(net.bench, "10.199.0.1", 2600) == "dropped"  # nothing enabled it
    assert net.connect(net.bench, "10.199.0.1", 22, "10.199.0.2") == "open"  # SSH from the management subnet
    assert net.connect(net.bench, "10.199.0.1", 22, "10.199.1.2") == "dropped"  # and from nowhere else
    assert net.connect(net.box, "10.199.0.2", 8883) == "open"  # outbound to the configured peer
    assert net.connect(net.box, "10.199.0.2", 9000) == "dropped"  # nothing else leaves
    listing = subprocess.run(["ip", "netns", "exec", net.box, "nft", "list", "counters", "table", "inet", "bedside"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "packets 0 " not in listing.split("dropped_in", 1)[1].split("}", 1)[0]

    # A broken site config: one line naming the key, exit 2, and the box fails closed.
    config.write_text(config.read_text().replace('["10.199.0.0/24"]', '["10.199.0.0/99"]'))
    broken = net.bedside(net.box, "firewall", "--apply", "--config", str(config))
    assert broken.returncode == 2
    assert "firewall.ssh_from[0]" in broken.stderr and broken.stderr.count("\n") == 1, broken.stderr
    assert net.connect(net.bench, "10.199.0.1", 2575) == "dropped"
    assert net.connect(net.bench, "10.199.0.1", 22, "10.199.0.2") == "dropped"


def test_the_image_base_ruleset_is_the_one_the_code_makes() -> None:
    # Loaded by bedside-firewall.service before any Python runs: it must not drift.
    shipped = Path(__file__).parents[2] / "image" / "files" / "usr" / "lib" / "bedside" / "firewall-base.nft"
    text = shipped.read_text()
    assert text.endswith(base_ruleset())
    assert all(line.startswith("#") for line in text[: -len(base_ruleset())].splitlines())


def test_config_text_cannot_add_rules_and_odd_networks_are_written_as_nft_reads_them(tmp_path: Path) -> None:
    text = _config(
        tmp_path,
        textwrap.dedent(r"""
        [firewall]
        ssh_from = ["10.0.0.0/255.0.0.0", "fe80::%eth0/64"]
        [[devices]]
        id = "x\"\n\t\taccept #"
        protocol = "hl7"
        port = "tcp://10.1.2.3:2575"
    """),
    )
    ruleset = render(openings(parse_config(text, "g.toml")))
    accepts = [line.strip() for line in ruleset.splitlines() if line.strip().endswith("accept")]
    assert "accept" not in accepts  # no bare rule from the device id
    assert 'comment "devices.x____accept__.port"' in ruleset
    assert "ip saddr 10.0.0.0/8 " in ruleset and "ip6 saddr fe80::/64 " in ruleset
    checked = subprocess.run(["nft", "-c", "-f", "-"], input=ruleset, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_any_failure_while_making_the_ruleset_is_one_line_exit_2(tmp_path: Path) -> None:
    # A fleet URL whose port is out of range passes the config check (https:// only): the
    # renderer must not crash with a traceback (under --apply it then loads the base).
    config = tmp_path / "g.toml"
    config.write_text(
        _config(
            tmp_path,
            textwrap.dedent("""
        [ota]
        server_url = "https://fleet.example:99999/repo"
        compatible = "x"
        root_path = "root.json"
        ca_path = "ca.pem"
        cert_path = "c.pem"
        key_path = "k.pem"
        [firewall]
        outbound = ["10.9.9.9:514"]
    """),
        )
    )
    res = subprocess.run([str(Path(sys.executable).parent / "bedside"), "firewall", "--config", str(config)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode in (0, 2) and "Traceback" not in res.stderr, res.stderr
    if res.returncode == 0:  # the bad URL opens nothing, the rest is still rendered
        assert "dport 99999" not in res.stdout and "ip daddr 10.9.9.9 tcp dport 514 accept" in res.stdout
