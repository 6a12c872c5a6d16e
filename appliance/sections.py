"""The store's and the uplink's own settings: the config's [queue] and [uplink] sections.

`RecordQueue` is built from `QueueSettings` and `Uplink` from `UplinkSettings`, the
very objects the config loader makes from the file: every default and limit is
written once, here. They live outside appliance.queue and appliance.uplink so that
reading a config loads neither (start-up time and memory, issue #15).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.settings import setting

__all__ = ["FirewallSettings", "QueueSettings", "TimeSettings", "UplinkSettings"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueueSettings:
    # SQLite store-and-forward queue; empty path = off.
    path: str = setting("")
    # AES-GCM key for payloads at rest; created 0600 if absent (new store only).
    key_path: str = setting("")
    max_bytes: int = setting(512 * MiB, min=MiB, max=1 << 40)
    commit_interval_ms: int = setting(100, min=5, max=10_000)
    commit_max_records: int = setting(2000, min=1, max=100_000)
    telemetry_ttl_s: float = setting(0.0, min=0.0, max=365 * 86_400.0)  # 0 = until delivered or dropped for space
    max_pending: int = setting(100_000, min=10, max=10_000_000)  # telemetry held in memory
    max_held_events: int = setting(100_000, min=10, max=10_000_000)  # alarm + technical records held in memory
    retry_max_ms: int = setting(5_000, min=10, max=600_000)  # longest wait between tries while the store fails
    # Small telemetry rows older than this are merged into large ones while the
    # uplink is not delivering (0 = never): 96 B/observation at 3-obs rows, ~30 merged.
    compact_after_s: float = setting(10.0, min=0.0, max=86_400.0)
    compact_rows_per_pass: int = setting(600, min=1, max=100_000)  # bounds one pass's store-thread time (~ms)
    # Unpaired observations on their own plane: stored as `unpaired` (sent on the quarantine
    # topic) and `held` (kept for release), never as telemetry. On whenever [clinical]
    # census_path is set; off = the quarantine bit on telemetry only (the wire before issue 21).
    quarantine_plane: bool = setting(True)
    # The clinical plane (issue 21): unpaired observations (sent on quarantine and held on
    # the box for `bedside devices release`) expire after this; 0 = kept until dropped for space.
    quarantine_ttl_s: float = setting(86_400.0, min=0.0, max=365 * 86_400.0)
    # Observations of a patient whose consent is withheld: kept on the box this long, then purged.
    withheld_ttl_s: float = setting(7 * 86_400.0, min=0.0, max=365 * 86_400.0)
    purge_every_s: float = setting(60.0, min=0.1, max=86_400.0)  # how often the ttls above are applied


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    # MQTT 5 broker over mutual TLS 1.3; empty host = offline (no uplink).
    host: str = setting("")
    port: int = setting(8883, min=1, max=65535)
    server_hostname: str = setting("")  # name in the broker's certificate; empty: host
    gateway_id: str = setting("")  # must equal the CN of the client certificate (the broker's ACL user)
    ca_path: str = setting("")
    cert_path: str = setting("")
    key_path: str = setting("")
    connect_timeout_s: float = setting(10.0, min=1.0, max=120.0)
    keepalive_s: int = setting(30, min=5, max=3600)
    window: int = setting(64, min=1, max=65535)
    backoff_min_s: float = setting(0.5, min=0.01, max=60.0)
    backoff_max_s: float = setting(60.0, min=0.1, max=3600.0, not_below="backoff_min_s")

    @property
    def tls_server_name(self) -> str:
        """The name the broker's certificate must carry."""
        return self.server_hostname or self.host

    def topic(self, leaf: str) -> str:
        return f"bedside/v1/{self.gateway_id}/{leaf}"


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """`[console]`: the local web console (`bedside console`, appliance/console/).

    HTTPS (TLS 1.3) on the management interface only: `listen_host` must be one
    address, never a wildcard; `interface` (optional) also binds the socket to that
    interface (SO_BINDTODEVICE), so a reply can never leave by the bedside network.
    Operators log in with a local account (`users_path`, `bedside console-user`) or
    a client certificate issued by `client_ca_path`; at least one is required."""

    listen_host: str = setting("")  # empty: no console
    port: int = setting(8443, min=1, max=65535)
    interface: str = setting("", max_len=15)
    cert_path: str = setting("")
    key_path: str = setting("")
    client_ca_path: str = setting("")
    users_path: str = setting("", written=True)
    session_s: float = setting(900.0, min=30.0, max=86_400.0)
    max_clients: int = setting(16, min=1, max=256)


@dataclass(frozen=True, slots=True)
class FirewallSettings:
    """[firewall]: what appliance/firewall.py opens beyond what the other sections need."""

    # Management subnets that may reach SSH (CIDR, IPv4 or IPv6); empty: no SSH at all.
    ssh_from: tuple[str, ...] = setting(())
    # Further outbound TCP destinations ("HOST:PORT" or "[v6]:PORT"), e.g. a syslog host.
    outbound: tuple[str, ...] = setting(())


@dataclass(frozen=True, slots=True)
class TimeSettings:
    """[time]: where the box takes its time from (appliance/ntp.py renders it for
    systemd-timesyncd; appliance/firewall.py opens NTP to these servers only)."""

    # The hospital's NTP servers, IP addresses or host names, tried in order; empty: the
    # clock is never synchronised and the gateway's clock-unsynced alarm stays up.
    ntp_servers: tuple[str, ...] = setting(())
