"""Gateway configuration: TOML -> frozen dataclasses, validated once at start-up.

Every field carries its limits in `metadata`; one generic loader checks unknown
keys, types and ranges and raises `ConfigError` with a single line naming the
file and the key (`gateway.toml: devices["spo2-left"].baud: must be one of …`; a device is
named by its id, by position only when it has no usable id).

Sections a component reads whole are that component's own settings, defaults and
limits written there once: [queue] is `QueueSettings` and [uplink] `UplinkSettings`
(appliance/sections.py); each [[devices]] table becomes its transport's device type
(drivers/devices.py), built here from the keys that transport takes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.clinical.audit_settings import AuditSettings, FhirSettings
from appliance.clinical.settings import ClinicalSettings
from appliance.core.errors import BedsideConfigError
from appliance.core.settings import Fail, build_settings, did_you_mean, item_key, part, setting, table_fields
from appliance.core.tls import resolve_tls
from appliance.sections import ConsoleSettings, FirewallSettings, QueueSettings, TimeSettings, UplinkSettings
from appliance.sinks import MAX_PENDING
from drivers import registry
from drivers.devices import DeviceSettings
from ota.policy import UpdatePolicy
from rules.outputs.coproc_settings import CoprocSettings
from rules.patterns import PatternConfig

__all__ = [
    "AlarmsConfig",
    "ArbiterConfig",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "GatewayConfig",
    "OtaConfig",
    "QueueSettings",
    "SinkConfig",
    "SupervisorConfig",
    "UplinkSettings",
    "device_types",
    "load_config",
    "parse_config",
]


class ConfigError(BedsideConfigError, ValueError):
    """A configuration file is unreadable or invalid; the message is one line."""


_f = setting
_PATTERN: Final = PatternConfig()
_ALLOW_ANY: Final = "allow_any_ble"  # GatewayConfig's switch for Transport.takes_any ports


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    bed_id: str = _f(min_len=1)
    registry_path: str = _f("registry.json", min_len=1)
    # Device clock further than this from the gateway: observation uses receive time.
    max_clock_skew_s: float = _f(300.0, min=1.0, max=86_400.0)
    log_level: str = _f("info", choices=("debug", "info", "warning", "error"))
    # How often pairing changes made by `bedside devices pair` are picked up.
    registry_poll_s: float = _f(2.0, min=0.1, max=3600.0)
    # Bench only: lets a device take port "ble:any" (the first advertiser of its service in
    # range, which at a ward can be the next bed's sensor). Off on a box at a bed.
    allow_any_ble: bool = _f(False)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    restart_min_s: float = _f(0.5, min=0.01, max=60.0)
    restart_max_s: float = _f(30.0, min=0.1, max=3600.0, not_below="restart_min_s")
    # A link that ran this long without crashing has its backoff reset.
    stable_after_s: float = _f(60.0, min=1.0, max=86_400.0)
    shutdown_timeout_s: float = _f(5.0, min=0.5, max=60.0)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    # JSON-lines debugging sink; empty string disables it.
    jsonl_path: str = _f("")
    # Records waiting for the writer; when full the oldest is dropped and counted.
    max_pending: int = _f(MAX_PENDING, min=10, max=1_000_000)


# Every device, whatever its transport; each transport's own type adds only the keys that
# apply to it (drivers/devices.py), so a key that does not is refused, naming it.
DeviceConfig = DeviceSettings


@dataclass(frozen=True, slots=True)
class OtaConfig:
    # Over-the-air updates from the fleet server (TUF + RAUC); empty server_url = off.
    server_url: str = _f("")  # https://fleet.example/repo (metadata/ and targets/ below it)
    compatible: str = _f("")  # RAUC compatible of this hardware, e.g. bedside-gw-amd64
    base_version: str = _f("0.0.0")  # version of a factory-written slot
    data_dir: str = _f("/var/lib/bedside/ota")  # TUF metadata, downloads, lifecycle record
    root_path: str = _f("")  # trusted root.json shipped in the image; seeds data_dir/tuf
    policy: UpdatePolicy = part(UpdatePolicy)  # poll_interval_s, max_deferral_s, ...: keys of this table
    rauc: str = _f("dbus", choices=("dbus", "cli"))
    rauc_bus_address: str = _f("")  # empty = the system bus
    # Health gate: must the uplink be connected before committing? (else offline is fine)
    require_uplink: bool = _f(False)
    # Unprivileged gateway: ask for the reboot by creating this file (a root path unit
    # reboots); empty = `systemctl reboot` directly.
    reboot_request_path: str = _f("")
    # mutual TLS to the fleet server; empty = the uplink's CA, certificate and key.
    ca_path: str = _f("")
    cert_path: str = _f("")
    key_path: str = _f("")


@dataclass(frozen=True, slots=True)
class AlarmsConfig:
    # Rule file; empty = the packaged default adult set (rules/default_adult.toml).
    rules_path: str = _f("")
    # Unix socket for `bedside alarm list|ack|pause` (mode 0660); empty = off.
    control_socket: str = _f("")
    # JSON-lines alarm event output; empty = off.
    events_path: str = _f("")
    console: bool = _f(True)
    # How often timers (delays, audio pause, escalation) advance.
    tick_s: float = _f(0.1, min=0.01, max=1.0)
    # GPIO alarm lines (libgpiod); empty chip = no GPIO output.
    gpio_chip: str = _f("")
    gpio_buzzer: int = _f(17, min=0, max=1023)
    gpio_led_red: int = _f(27, min=0, max=1023)
    gpio_led_yellow: int = _f(22, min=0, max=1023)
    gpio_led_cyan: int = _f(23, min=0, max=1023)
    gpio_nurse_call: int = _f(24, min=0, max=1023)
    # IEC 60601-1-8 inter-burst intervals and flash rates; the limits are the standard's.
    # Defaults are the sound patterns' own (rules/patterns.py), written there once.
    high_burst_interval_s: float = _f(_PATTERN.high_interval_s, min=2.5, max=15.0)
    medium_burst_interval_s: float = _f(_PATTERN.medium_interval_s, min=2.5, max=30.0)
    low_burst_interval_s: float = _f(_PATTERN.low_interval_s, min=15.0, max=3600.0)
    high_flash_hz: float = _f(_PATTERN.high_flash_hz, min=1.4, max=2.8)
    medium_flash_hz: float = _f(_PATTERN.medium_flash_hz, min=0.4, max=0.8)
    # The independent alarm co-processor (coproc_port, coproc_mirror, ...: keys of this table).
    coproc: CoprocSettings = part(CoprocSettings)


@dataclass(frozen=True, slots=True)
class ArbiterConfig:
    # metric reference id -> device ids, most trusted first.
    precedence: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fresh_s: float = _f(10.0, min=0.5, max=3600.0)


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    queue: QueueSettings = field(default_factory=QueueSettings)
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    arbiter: ArbiterConfig = field(default_factory=ArbiterConfig)
    ota: OtaConfig = field(default_factory=OtaConfig)
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    fhir: FhirSettings = field(default_factory=FhirSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    firewall: FirewallSettings = field(default_factory=FirewallSettings)
    time: TimeSettings = field(default_factory=TimeSettings)
    devices: tuple[DeviceSettings, ...] = ()


def parse_config(text: str, source: str = "<config>") -> Config:
    def fail(key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {problem}")

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    config: Config = build_settings(Config, raw, "", fail, {DeviceSettings: _build_device})
    _cross_checks(config, fail)
    return config


def device_types() -> tuple[type[DeviceSettings], ...]:
    """The device type of every transport (serial, radio, listener, ...)."""
    return tuple(t.device for t in registry.transports())


def _refusals() -> dict[str, str]:
    """Every transport's and family's device key -> why it is refused where it does not apply
    ("" = the default: does not apply to a <kind> device; options: unknown key)."""
    out = {key: fld.metadata.get("only", "") for cls in device_types() for key, (fld, _) in table_fields(cls).items()}
    for family in registry.FAMILIES:
        for cls in family.options.values():
            out.update({key: fld.metadata.get("only", "unknown key") for key, (fld, _) in table_fields(cls).items()})
    return out


def _build_device(raw: Any, where: str, fail: Fail) -> DeviceSettings:
    """The device type of its transport (the port's spelling), from its table."""
    if not isinstance(raw, dict):
        fail(where, "must be a table")
    refusals = _refusals()
    for key in raw:
        if key not in refusals:
            fail(f"{where}.{key}", "unknown key" + did_you_mean(key, refusals))
    common = table_fields(DeviceSettings)
    base = build_settings(DeviceSettings, {k: v for k, v in raw.items() if k in common}, where, fail)
    family = registry.family_for(base.protocol)
    transport = registry.transport_for(family, base.port)
    own = table_fields(transport.device)
    options_cls = family.options.get(transport.kind) if transport in family.transports else None
    allowed = set(table_fields(options_cls)) if options_cls else set()
    # A transport not the family's: the port is refused in _check_port, naming the one it needs.
    if transport in family.transports:
        for key in raw:
            if key not in own and key not in allowed:
                fail(f"{where}.{key}", refusals[key] or f"does not apply to a {transport.kind} device")
    dev: DeviceSettings = build_settings(transport.device, {k: v for k, v in raw.items() if k in own}, where, fail)
    if options_cls is None:
        return dev
    options = build_settings(options_cls, {k: v for k, v in raw.items() if k in allowed}, where, fail)
    return dataclasses.replace(dev, options=dataclasses.asdict(options))


def _cross_checks(config: Config, fail: Fail) -> None:
    if config.queue.path and not config.queue.key_path:
        fail("queue.key_path", "required when queue.path is set (payloads are always encrypted)")
    up = config.uplink
    if up.host:
        if not config.queue.path:
            fail("uplink.host", "the uplink drains the store: set queue.path too")
        for key in ("gateway_id", "ca_path", "cert_path", "key_path"):
            if not getattr(up, key):
                fail(f"uplink.{key}", "required when uplink.host is set")
    _check_ota(config, fail)
    _check_clinical(config, fail)
    _check_audit(config, fail)
    _check_console(config, fail)
    _check_firewall(config.firewall, fail)
    _check_time(config.time, fail)
    seen_ids: set[str] = set()
    seen_ports: dict[str, str] = {}
    for i, dev in enumerate(config.devices):
        key = item_key("devices", i, dev) if dev.id not in seen_ids else f"devices[{i}]"
        if dev.id in seen_ids:
            fail(f"{key}.id", f"duplicate device id {dev.id!r}")
        family = registry.family_for(dev.protocol)
        port = registry.transport_for(family, dev.port).port_identity(dev.port)
        if port in seen_ports:
            fail(f"{key}.port", f"port {dev.port!r} is already used by device {seen_ports[port]!r}")
        seen_ids.add(dev.id)
        seen_ports[port] = dev.id
        try:
            ZoneInfo(dev.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fail(f"{key}.timezone", f"unknown time zone {dev.timezone!r}")
        _check_port(config, dev, key, fail)
        if registry.transport_for(family, dev.port).takes_any(dev.port) and not config.gateway.allow_any_ble:
            fail(
                f"{key}.port",
                f"{dev.port!r} takes the first device in range (at a ward, maybe another bed's): give the "
                f"device's address, or set gateway.{_ALLOW_ANY} = true (bench only)",
            )


def _check_clinical(config: Config, fail: Fail) -> None:
    c = config.clinical
    if c.adt_listen and not c.census_path:
        fail("clinical.adt_listen", "the ADT feed keeps the census: set clinical.census_path too")
    if c.census_fhir_url:
        if c.adt_listen:
            fail("clinical.census_fhir_url", "one census source: the ADT feed or the FHIR poll, not both")
        if not c.census_path:
            fail("clinical.census_fhir_url", "the FHIR poll keeps the census: set clinical.census_path too")
        if not c.census_fhir_url.startswith("https://"):
            fail("clinical.census_fhir_url", "must be an https:// URL (mutual TLS, no plaintext patient data)")
        if not (config.uplink.ca_path and config.uplink.cert_path and config.uplink.key_path):
            fail(
                "clinical.census_fhir_url",
                "uses the uplink's CA, certificate and key: set uplink.ca_path, cert_path, key_path",
            )


def _check_firewall(fw: FirewallSettings, fail: Fail) -> None:
    for i, net in enumerate(fw.ssh_from):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            fail(f"firewall.ssh_from[{i}]", f"{net!r}: expected a network such as 10.20.0.0/24 or fd00::/64")
    for i, dest in enumerate(fw.outbound):
        parts = urlsplit(f"//{dest}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            fail(f"firewall.outbound[{i}]", f"{dest!r}: expected HOST:PORT (or [IPv6]:PORT)")


# A host name as the resolver takes it: dot-separated labels of letters, digits and
# inner hyphens (RFC 1123), at most 253 characters.
_HOST_NAME: Final = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
MAX_NTP_SERVERS: Final = 8


_ZONE: Final = re.compile(r"(?:[A-Za-z0-9_.-]{1,15})?")  # an interface name, or none


def _check_time(time: TimeSettings, fail: Fail) -> None:
    # The names end up in timesyncd's configuration and the firewall: nothing but an
    # address or a host name may pass (no spaces, no second key smuggled in).
    if len(time.ntp_servers) > MAX_NTP_SERVERS:
        fail("time.ntp_servers", f"at most {MAX_NTP_SERVERS} servers")
    for i, server in enumerate(time.ntp_servers):
        try:
            ipaddress.ip_address(server)
            # Python takes any text after "%" as an IPv6 zone: only an interface name may pass.
            if not _ZONE.fullmatch(server.partition("%")[2]):
                raise ValueError(server)
        except ValueError:
            if not _HOST_NAME.fullmatch(server):
                fail(f"time.ntp_servers[{i}]", f"{server!r}: expected an IP address or a host name")
        if server in time.ntp_servers[:i]:
            fail(f"time.ntp_servers[{i}]", f"{server!r} is listed twice")


def _check_console(config: Config, fail: Fail) -> None:
    console = config.console
    if not console.listen_host:
        return
    try:
        address = ipaddress.ip_address(console.listen_host)
    except ValueError:
        fail("console.listen_host", f"{console.listen_host!r}: must be the management interface's IP address")
    if address.is_unspecified:
        fail("console.listen_host", "must be the management interface's address, not a wildcard (0.0.0.0 or ::)")
    for key in ("cert_path", "key_path"):
        if not getattr(console, key):
            fail(f"console.{key}", "required when console.listen_host is set (HTTPS only)")
    if not console.users_path and not console.client_ca_path:
        fail("console.users_path", "set users_path (local logins) or client_ca_path (client certificates), or both")
    if not config.alarms.control_socket:
        fail("alarms.control_socket", "the console reads the gateway through its control socket: set it")


def _check_ota(config: Config, fail: Fail) -> None:
    ota, up = config.ota, config.uplink
    if not ota.server_url:
        return
    if not ota.server_url.startswith("https://"):
        fail("ota.server_url", "must be an https:// URL (no plaintext updates)")
    if not ota.compatible:
        fail("ota.compatible", "required when ota.server_url is set")
    for file in resolve_tls("ota", (ota.ca_path, ota.cert_path, ota.key_path), up).files:
        if not file.path:
            fail(file.key, "required (or set the uplink's) when ota.server_url is set")


def _check_audit(config: Config, fail: Fail) -> None:
    if not config.audit.journal_path:
        return
    if not config.queue.key_path:
        fail("audit.journal_path", "the journal is sealed with the store's key: set queue.path and queue.key_path too")
    if not (config.audit.key_path or config.uplink.key_path):
        fail("audit.key_path", "required (or set uplink.key_path: the box key signs the audit trail)")


def _check_port(config: Config, dev: DeviceSettings, key: str, fail: Fail) -> None:
    """The port's transport must be one of the family's, spelled right, with the
    settings the family requires there (fixed line profiles, listener files)."""
    family = registry.family_for(dev.protocol)
    transport = registry.transport_for(family, dev.port)
    if transport not in family.transports:
        fail(f"{key}.port", transport.refusal or family.transports[0].refusal)
    if problem := transport.port_problem(dev.port):
        fail(f"{key}.port", problem)
    if found := transport.device_problem(dev.protocol, dev, config.uplink):
        fail(f"{key}.{found[0]}", found[1])


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_config(text, str(path))
