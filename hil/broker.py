"""A real Mosquitto broker on loopback with mutual TLS 1.3, and a fresh PKI.

Used by the integration tests and by `bedside demo` (when Mosquitto is installed).

`require_certificate true`, `use_identity_as_username true` (the client
certificate's CN is the MQTT user name) and an ACL so a gateway may publish only
under `bedside/v1/<its id>/`. The PKI is generated fresh with `cryptography`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.uplink.pki import issue, make_ca, write_key, write_pem
from appliance.uplink.tls import TlsFiles


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: str

    def client(self, name: str) -> TlsFiles:
        return TlsFiles(self.ca, str(self.dir / f"{name}.pem"), str(self.dir / f"{name}.key"))

    def client_paths(self, name: str) -> tuple[str, str, str]:
        """(CA, certificate, key) of a client: UplinkSettings' ca_path, cert_path, key_path."""
        files = self.client(name)
        return files.ca, files.cert, files.key


def make_pki(directory: Path, broker_hosts: tuple[str, ...] = ()) -> Pki:
    """`broker_hosts`: further names the broker's certificate covers (the address a VM
    reaches the host broker at)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("Bedside Test CA")
    write_pem(directory / "ca.pem", ca.cert)
    broker = issue(ca, "localhost", server=True, hosts=("localhost", "127.0.0.1", *broker_hosts))
    write_pem(directory / "broker.pem", broker.cert)
    write_key(directory / "broker.key", broker.key)
    for name in ("gw-1", "gw-2", "tail"):
        leaf = issue(ca, name)
        write_pem(directory / f"{name}.pem", leaf.cert)
        write_key(directory / f"{name}.key", leaf.key)
    expired = issue(ca, "gw-old", valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), valid_days=1)
    write_pem(directory / "expired.pem", expired.cert)
    write_key(directory / "expired.key", expired.key)
    rogue_ca = make_ca("Rogue CA")
    rogue = issue(rogue_ca, "gw-1")
    write_pem(directory / "rogue.pem", rogue.cert)
    write_key(directory / "rogue.key", rogue.key)
    return Pki(directory, str(directory / "ca.pem"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(
        self, directory: Path, pki: Pki, persistent: bool = False, host: str = "127.0.0.1", *,
        unbounded_queues: bool = False,
    ) -> None:  # fmt: skip
        """`host`: a further address it listens on beside 127.0.0.1 (the host end of a
        bench veth pair, the bench's address a box on the wire reaches).
        `unbounded_queues`: no limit on the QoS 1 messages queued for a slow subscriber
        (Mosquitto drops them past 1,000 by default): a bench consumer that falls behind
        a drain of a million observations must not be where they get lost."""
        self.dir = directory
        self.host = host
        self.pki = pki
        self.persistent = persistent
        self.unbounded_queues = unbounded_queues
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> Path:
        acl = self.dir / "acl"
        acl.write_text(
            "user tail\ntopic read bedside/#\ntopic write bedside/v1/+/cmd\n\npattern readwrite bedside/v1/%u/#\n"
        )
        conf = self.dir / "mosquitto.conf"
        # TLS settings belong to the listener above them: each listener gets the lot.
        listeners = "".join(
            f"""listener {self.port} {host}
cafile {self.pki.ca}
certfile {self.pki.dir / "broker.pem"}
keyfile {self.pki.dir / "broker.key"}
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
"""
            for host in dict.fromkeys(("127.0.0.1", self.host))
        )
        conf.write_text(
            f"""
user root
persistence {"true" if self.persistent else "false"}
persistence_location {self.dir}/
log_dest stderr
allow_anonymous false
{listeners}acl_file {acl}
{"max_queued_messages 0" if self.unbounded_queues else ""}
"""
        )
        return conf

    @staticmethod
    def executable() -> str:
        """The mosquitto binary; installed from Debian's package if missing (root)."""
        found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if found is None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto"],
                           check=True, env=env, capture_output=True)  # fmt: skip
            found = "/usr/sbin/mosquitto"
        return found

    def start(self) -> None:
        self.proc = start_listening([self.executable(), "-c", str(self.config())], self.port, "mosquitto")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def start_listening(cmd: list[str], port: int, name: str) -> subprocess.Popen[bytes]:
    """Start a server and wait until it accepts on 127.0.0.1:port (or fail with its stderr)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: " + (proc.stderr.read().decode() if proc.stderr else ""))
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not start listening")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
