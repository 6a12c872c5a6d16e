"""A real fleet server: nginx on loopback serving a static TUF repository over TLS 1.3,
verifying client certificates against the fleet CA.

`/` serves the repository as it is; `/slow/` serves the same files at a trickle
(`limit_rate`), a stalled mirror for the slow-retrieval test. Started by the OTA
tests (and usable by the image tests), stopped by them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from appliance.uplink.pki import issue, make_ca, write_key, write_pem
from hil.broker import free_port, start_listening, stop_process

__all__ = ["FleetServer", "write_fleet_pki"]

NGINX = "/usr/sbin/nginx"


def write_fleet_pki(pki: Path, server_ip: str, ca_name: str = "Fleet CA") -> None:
    """A fleet TLS CA, the server's certificate for `server_ip` and a box's client
    certificate (CN box-1) into `pki`: fleet-ca.pem, server.pem/.key, box.pem/.key."""
    pki.mkdir(parents=True, exist_ok=True)
    ca = make_ca(ca_name)
    write_pem(pki / "fleet-ca.pem", ca.cert)
    server = issue(ca, server_ip, server=True, hosts=(server_ip,))
    write_pem(pki / "server.pem", server.cert)
    write_key(pki / "server.key", server.key)
    box = issue(ca, "box-1")
    write_pem(pki / "box.pem", box.cert)
    write_key(pki / "box.key", box.key)


class FleetServer:
    def __init__(
        self, directory: Path, root: Path, *, ca: str, cert: str, key: str, slow_rate_bytes_s: int = 16
    ) -> None:
        self.dir = directory
        self.root = root
        self.ca, self.cert, self.key = ca, cert, key
        self.slow_rate = slow_rate_bytes_s
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @classmethod
    def with_pki(cls, directory: Path, root: Path, pki: Path) -> FleetServer:
        """A server using the files `write_fleet_pki` wrote into `pki`."""
        return cls(directory, root, ca=str(pki / "fleet-ca.pem"), cert=str(pki / "server.pem"),
                   key=str(pki / "server.key"))  # fmt: skip

    def config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""
daemon off;
user root;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        ssl_client_certificate {self.ca};
        ssl_verify_client on;
        location / {{ root {self.root}; }}
        location /slow/ {{ alias {self.root}/; limit_rate {self.slow_rate}; }}
    }}
}}
"""
        )
        return conf

    def start(self) -> None:
        self.proc = start_listening([NGINX, "-c", str(self.config())], self.port, "nginx")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
