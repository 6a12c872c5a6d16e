"""The fleet side of an `ota` step on `--target vm`: the release manager's fleet
repository (`bedside ota keys --dir FLEET`, the image built with `--signing FLEET/rauc`)
served by a real fleet server (nginx, TLS 1.3, client certificates: hil/fleet_server.py)
on host loopback, reached by the box through one more guestfwd address; the release
(`--release BUNDLE`, a RAUC bundle signed by the fleet) published when the step plays.

Provisioning adds what a site's box holds for updates: `[ota]` in the site config, the
fleet's first TUF root, the fleet server's CA and the box's client certificate (from a
bench CA made for the run, key 0600). The box then does what it does in the field:
polls, downloads, installs into the other slot with RAUC, reboots through GRUB, passes
its health gate and commits. What the bench sees of it is the console: "OTA rebooting"
(the box goes off), the gateway's unit started again (on), "OTA committed" (the step's
end); "OTA failed" ends the step at once with the box's own words.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from hil.fleet_server import FleetServer, write_fleet_pki
from hil.suite.spec import Suite, SuiteError
from ota.bundle_check import read_bundle
from ota.errors import FleetError
from ota.repo import FleetRepo
from ota.version import parse_version

__all__ = ["FLEET_IP", "OtaBench", "needs_fleet"]

FLEET_IP: Final = "10.0.2.101"
FLEET_PORT: Final = 8443
POLL_INTERVAL_S: Final = 10.0  # the agent's lower bound (appliance/config.py)


def needs_fleet(suite: Suite) -> bool:
    return any(step.action == "ota" for sc in suite.scenarios for step in sc.steps)


class OtaBench:
    def __init__(self, fleet_dir: Path, release: Path, workdir: Path) -> None:
        """SuiteError (one line) when the fleet or the release is not one the bench can use."""
        try:
            self.repo = FleetRepo(fleet_dir)
            if not release.is_file():
                raise FleetError(f"{release}: no such bundle")
            self.info = read_bundle(release, fleet_dir / "rauc" / "ca.pem")
        except FleetError as exc:
            raise SuiteError(f"--fleet/--release: {exc}") from None
        self.release = release
        self.dir = workdir / "fleet"
        self.server: FleetServer | None = None

    def check_newer(self, rootfs: Path) -> None:
        """SuiteError unless the release is newer than the image (the box would skip it)."""
        base = image_version(rootfs)
        try:
            newer = parse_version(self.info.version) > parse_version(base)
        except ValueError:
            newer = False
        if not newer:
            raise SuiteError(f"--release: {self.info.version} is not newer than the image's {base}: the box skips it")

    def start(self) -> None:
        """The bench's TLS PKI for the fleet server and the box, and the server itself."""
        pki = self.dir / "pki"
        write_fleet_pki(pki, FLEET_IP, "Bench fleet CA")
        self.server = FleetServer.with_pki(self.dir / "nginx", self.repo.fleet / "repo", pki)
        self.server.start()

    def guestfwd(self) -> str:
        """One host command per guest connection to the fleet address (tcp_pipe.py)."""
        assert self.server is not None
        pipe = f"{sys.executable} {Path(__file__).resolve().parents[1] / 'tcp_pipe.py'} 127.0.0.1 {self.server.port}"
        return f"guestfwd=tcp:{FLEET_IP}:{FLEET_PORT}-cmd:{pipe}"

    def config(self, base_version: str) -> str:
        return f"""[ota]
server_url = "https://{FLEET_IP}:{FLEET_PORT}"
compatible = "{self.info.compatible}"
base_version = "{base_version}"
data_dir = "/data/ota"
root_path = "/data/config/root.json"
poll_interval_s = {POLL_INTERVAL_S}
poll_jitter_s = 0.0
health_timeout_s = 120.0
ca_path = "/data/keys/fleet-ca.pem"
cert_path = "/data/keys/box.pem"
key_path = "/data/keys/box.key"
reboot_request_path = "/run/bedside/reboot-requested"
"""

    def provision(self, data: Path, uid: int, gid: int) -> None:
        """The box's share of the fleet onto its mounted data partition."""
        shutil.copyfile(self.repo.meta_dir / "1.root.json", data / "config" / "root.json")
        for name in ("fleet-ca.pem", "box.pem", "box.key"):
            shutil.copyfile(self.dir / "pki" / name, data / "keys" / name)
        (data / "ota").mkdir(exist_ok=True)
        keys = [data / "keys" / n for n in ("fleet-ca.pem", "box.pem", "box.key")]
        for path in (data / "ota", data / "config" / "root.json", *keys):
            shutil.chown(path, uid, gid)
        (data / "keys" / "box.key").chmod(0o600)

    def publish(self) -> str:
        """The release, signed into the fleet's repository for every box (what the step does)."""
        return self.repo.publish(self.release, self.info.version, self.info.compatible)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def image_version(rootfs: Path) -> str:
    """The version the image was built as (image/build --version), from its root."""
    res = subprocess.run(["unsquashfs", "-cat", str(rootfs), "etc/bedside-release"], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return res.stdout.strip()
