"""Gateway configuration: TOML -> frozen dataclasses, validated once at start-up.

Every field carries its limits in `metadata`; one generic loader checks unknown
keys, types and ranges and raises `ConfigError` with a single line naming the
file and the key (`gateway.toml: devices[1].baud: must be one of …`).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.core.errors import BedsideConfigError
from appliance.core.settings import Fail, build_settings, setting
from drivers import registry

__all__ = [
    "AlarmsConfig",
    "ArbiterConfig",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "GatewayConfig",
    "QueueConfig",
    "SinkConfig",
    "SupervisorConfig",
    "UplinkConfig",
    "load_config",
    "parse_config",
]

BAUD_RATES: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


class ConfigError(BedsideConfigError, ValueError):
    """A configuration file is unreadable or invalid; the message is one line."""


_f = setting


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    bed_id: str = _f(min_len=1)
    registry_path: str = _f("registry.json", min_len=1)
    # Device clock further than this from the gateway: observation uses receive time.
    max_clock_skew_s: float = _f(300.0, min=1.0, max=86_400.0)
    log_level: str = _f("info", choices=("debug", "info", "warning", "error"))
    # How often pairing changes made by `bedside devices pair` are picked up.
    registry_poll_s: float = _f(2.0, min=0.1, max=3600.0)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    restart_min_s: float = _f(0.5, min=0.01, max=60.0)
    restart_max_s: float = _f(30.0, min=0.1, max=3600.0)
    # A link that ran this long without crashing has its backoff reset.
    stable_after_s: float = _f(60.0, min=1.0, max=86_400.0)
    shutdown_timeout_s: float = _f(5.0, min=0.5, max=60.0)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    # JSON-lines debugging sink; empty string disables it.
    jsonl_path: str = _f("")
    # Records waiting for the writer; when full the oldest is dropped and counted.
    max_pending: int = _f(10_000, min=10, max=1_000_000)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device. Which keys apply depends on its transport (the port's spelling):
    a key that does not is refused, naming it (drivers/family.py `Transport.keys`)."""

    id: str = _f(min_len=1, max_len=64)
    protocol: str = _f(choices=registry.protocols)  # called: the registry may grow (tests)
    port: str = _f(min_len=1)
    baud: int = _f(9600, choices=BAUD_RATES)
    bytesize: int = _f(8, choices=(5, 6, 7, 8))
    parity: str = _f("N", choices=("N", "E", "O", "M", "S"))
    stopbits: float = _f(1.0, choices=(1.0, 1.5, 2.0))
    rtscts: bool = _f(False)
    xonxoff: bool = _f(False)
    exclusive: bool = _f(True)
    stale_after_s: float = _f(5.0, min=0.1, max=3600.0)
    reopen_min_s: float = _f(0.2, min=0.01, max=60.0)
    reopen_max_s: float = _f(10.0, min=0.1, max=600.0)
    timezone: str = _f("UTC", min_len=1)
    # Overrides gateway.bed_id for this device until the registry pairs it.
    bed_id: str = _f("")
    # A tls:// listener's certificate and key, and the CA its senders' certificates
    # must come from (empty: the uplink's, see listener_ca()).
    tls_cert_path: str = _f("")
    tls_key_path: str = _f("")
    tls_ca_path: str = _f("")
    # The family's own keys on this transport (DeviceFamily.options), checked like the rest.
    options: typing.Mapping[str, Any] = field(default_factory=dict)


# Keys every device takes, whatever its transport.
_DEVICE_KEYS: Final = frozenset({"id", "protocol", "port", "timezone", "bed_id"})


@dataclass(frozen=True, slots=True)
class QueueConfig:
    # SQLite store-and-forward queue; empty path = off.
    path: str = _f("")
    # AES-GCM key for payloads at rest; created 0600 if absent (new store only).
    key_path: str = _f("")
    max_bytes: int = _f(512 * 1024 * 1024, min=1024 * 1024, max=1 << 40)
    commit_interval_ms: int = _f(100, min=5, max=10_000)
    commit_max_records: int = _f(2000, min=1, max=100_000)
    telemetry_ttl_s: float = _f(0.0, min=0.0, max=365 * 86_400.0)


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    # MQTT 5 broker over mutual TLS 1.3; empty host = offline (no uplink).
    host: str = _f("")
    port: int = _f(8883, min=1, max=65535)
    server_hostname: str = _f("")  # name in the broker's certificate; default: host
    gateway_id: str = _f("")  # must equal the CN of the client certificate (the broker's ACL user)
    ca_path: str = _f("")
    cert_path: str = _f("")
    key_path: str = _f("")
    connect_timeout_s: float = _f(10.0, min=1.0, max=120.0)
    window: int = _f(64, min=1, max=65535)


@dataclass(frozen=True, slots=True)
class OtaConfig:
    # Over-the-air updates from the fleet server (TUF + RAUC); empty server_url = off.
    server_url: str = _f("")  # https://fleet.example/repo (metadata/ and targets/ below it)
    compatible: str = _f("")  # RAUC compatible of this hardware, e.g. bedside-gw-amd64
    base_version: str = _f("0.0.0")  # version of a factory-written slot
    data_dir: str = _f("/var/lib/bedside/ota")  # TUF metadata, downloads, lifecycle record
    root_path: str = _f("")  # trusted root.json shipped in the image; seeds data_dir/tuf
    poll_interval_s: float = _f(3600.0, min=10.0, max=7 * 86400.0)
    poll_jitter_s: float = _f(600.0, min=0.0, max=86400.0)
    max_deferral_s: float = _f(4 * 3600.0, min=0.0, max=7 * 86400.0)
    health_timeout_s: float = _f(120.0, min=1.0, max=3600.0)
    max_boot_attempts: int = _f(3, min=1, max=10)
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
    high_burst_interval_s: float = _f(5.0, min=2.5, max=15.0)
    medium_burst_interval_s: float = _f(8.0, min=2.5, max=30.0)
    low_burst_interval_s: float = _f(20.0, min=15.0, max=3600.0)
    high_flash_hz: float = _f(2.0, min=1.4, max=2.8)
    medium_flash_hz: float = _f(0.6, min=0.4, max=0.8)


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
    queue: QueueConfig = field(default_factory=QueueConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    arbiter: ArbiterConfig = field(default_factory=ArbiterConfig)
    ota: OtaConfig = field(default_factory=OtaConfig)
    devices: tuple[DeviceConfig, ...] = ()


def parse_config(text: str, source: str = "<config>") -> Config:
    def fail(key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {problem}")

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    config: Config = build_settings(Config, raw, "", fail, {DeviceConfig: _build_device})
    _cross_checks(config, fail)
    return config


def _option_keys() -> dict[str, str]:
    """Family-specific device keys of every family -> why they are refused elsewhere."""
    return {
        fld.name: fld.metadata.get("only", "unknown key")
        for family in registry.FAMILIES
        for cls in family.options.values()
        for fld in dataclasses.fields(cls)
    }


def _build_device(raw: Any, where: str, fail: Fail) -> DeviceConfig:
    if not isinstance(raw, dict):
        fail(where, "must be a table")
    names = {f.name for f in dataclasses.fields(DeviceConfig)} - {"options"}
    extra = _option_keys()
    for key in raw:
        if key not in names and key not in extra:
            fail(f"{where}.{key}", "unknown key")
    dev: DeviceConfig = build_settings(DeviceConfig, {k: v for k, v in raw.items() if k in names}, where, fail)
    family = registry.family_for(dev.protocol)
    transport = registry.transport_for(family, dev.port)
    if transport not in family.transports:
        return dev  # the port is refused in _check_port, naming the transport the family needs
    options_cls = family.options.get(transport.kind)
    allowed = {f.name for f in dataclasses.fields(options_cls)} if options_cls else set()
    for key in raw:
        if key in extra and key not in allowed:
            fail(f"{where}.{key}", extra[key])
        if key in names and key not in _DEVICE_KEYS and key not in transport.keys:
            fail(f"{where}.{key}", f"does not apply to a {transport.kind} device")
    if options_cls is None:
        return dev
    options = build_settings(options_cls, {k: v for k, v in raw.items() if k in allowed}, where, fail)
    return dataclasses.replace(dev, options=dataclasses.asdict(options))


def listener_ca(config: Config, dev: DeviceConfig) -> tuple[str, str]:
    """(config key, path) of the CA a listener's senders must come from: the device's
    own, else the uplink's. Resolved here only; checks and the gateway ask this."""
    if dev.tls_ca_path:
        return "tls_ca_path", dev.tls_ca_path
    return "uplink.ca_path", config.uplink.ca_path


def _cross_checks(config: Config, fail: Fail) -> None:
    sup = config.supervisor
    if sup.restart_max_s < sup.restart_min_s:
        fail("supervisor.restart_max_s", "must not be below restart_min_s")
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
    seen_ids: set[str] = set()
    seen_ports: dict[str, str] = {}
    for i, dev in enumerate(config.devices):
        key = f"devices[{i}]"
        if dev.id in seen_ids:
            fail(f"{key}.id", f"duplicate device id {dev.id!r}")
        family = registry.family_for(dev.protocol)
        port = registry.transport_for(family, dev.port).port_identity(dev.port)
        if port in seen_ports:
            fail(f"{key}.port", f"port {dev.port!r} is already used by device {seen_ports[port]!r}")
        seen_ids.add(dev.id)
        seen_ports[port] = dev.id
        if dev.reopen_max_s < dev.reopen_min_s:
            fail(f"{key}.reopen_max_s", "must not be below reopen_min_s")
        try:
            ZoneInfo(dev.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fail(f"{key}.timezone", f"unknown time zone {dev.timezone!r}")
        _check_port(config, dev, key, fail)


def _check_ota(config: Config, fail: Fail) -> None:
    ota, up = config.ota, config.uplink
    if not ota.server_url:
        return
    if not ota.server_url.startswith("https://"):
        fail("ota.server_url", "must be an https:// URL (no plaintext updates)")
    if not ota.compatible:
        fail("ota.compatible", "required when ota.server_url is set")
    for key in ("ca_path", "cert_path", "key_path"):
        if not (getattr(ota, key) or getattr(up, key)):
            fail(f"ota.{key}", "required (or set the uplink's) when ota.server_url is set")


def _check_port(config: Config, dev: DeviceConfig, key: str, fail: Fail) -> None:
    """The port's transport must be one of the family's, spelled right, with the
    settings the family requires there (fixed line profiles, listener files)."""
    family = registry.family_for(dev.protocol)
    transport = registry.transport_for(family, dev.port)
    if transport not in family.transports:
        fail(f"{key}.port", transport.refusal or family.transports[0].refusal)
    if problem := transport.port_problem(dev.port):
        fail(f"{key}.port", problem)
    resolved = dataclasses.replace(dev, tls_ca_path=listener_ca(config, dev)[1])
    if found := transport.device_problem(dev.protocol, resolved):
        fail(f"{key}.{found[0]}", found[1])


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_config(text, str(path))
