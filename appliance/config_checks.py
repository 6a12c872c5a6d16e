"""Start-up checks against the machine: what `parse_config` cannot know from the text.

`bedside run` calls `startup_checks()` after loading the config and before the
gateway starts, so a path of the wrong kind, a port someone else holds or a
socket path the kernel cannot bind is one `ConfigError` line naming the file and
the key (exit 2) instead of a task that crash-loops behind a READY gateway.
Only `bedside run` calls it: `bedside alarm --config …` must work while the
gateway itself holds the ports and the control socket.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import stat
import typing
from pathlib import Path
from typing import Final

from appliance.config import Config, ConfigError
from appliance.control import path_kind, socket_path_problem
from appliance.core.errors import BedsideConfigError
from appliance.core.settings import item_key, table_fields, table_values
from drivers import registry
from drivers.address import parse_listen

__all__ = ["UNIX_PATH_MAX", "startup_checks"]

# sockaddr_un.sun_path is 108 bytes on Linux, one of which is the terminating NUL.
UNIX_PATH_MAX: Final = 107

Fail = typing.Callable[[str, str], typing.NoReturn]


def startup_checks(config: Config, source: str) -> None:
    """Raise ConfigError (one line: `source: key: problem`) for the first problem."""

    def fail(key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {problem}")

    for key, path in _written_files(config):
        _check_file(key, path, fail, writable=True)
    for key, path in _read_files(config):
        _check_file(key, path, fail)
    if config.ota.data_dir:
        _check_dir("ota.data_dir", config.ota.data_dir, fail)
    for i, dev in enumerate(config.devices):
        if registry.transport_for(registry.family_for(dev.protocol), dev.port).kind == "serial":
            _check_not_dir(f"{item_key('devices', i, dev)}.port", dev.port, fail)
    if config.alarms.control_socket:
        _check_socket_path("alarms.control_socket", config.alarms.control_socket, fail)
    _check_coproc(config, fail)
    _check_tls_listeners(config, fail)
    _check_listeners(config, fail)
    if config.audit.journal_path:  # the box key signs the audit chain: 0600, EC P-256
        from appliance.clinical.audit import load_box_key

        try:
            load_box_key(config.audit.key_path or config.uplink.key_path)
        except BedsideConfigError as exc:
            fail("audit.key_path" if config.audit.key_path else "uplink.key_path", str(exc))


def _check_coproc(config: Config, fail: Fail) -> None:
    co = config.alarms.coproc
    if co.coproc_port:
        _check_not_dir("alarms.coproc_port", co.coproc_port, fail)
        if any(dev.port == co.coproc_port for dev in config.devices):
            fail("alarms.coproc_port", f"{co.coproc_port} is a device's port")
    if co.coproc_firmware_dir:
        for name in ("main.py", "bsc_proto.py"):  # the version is read from bsc_proto.py
            if not (Path(co.coproc_firmware_dir) / name).is_file():
                fail("alarms.coproc_firmware_dir", f"{co.coproc_firmware_dir}: no {name}: not a firmware folder")


def _written_files(config: Config) -> list[tuple[str, str]]:
    """Files the gateway creates or appends to: they may be missing, never a directory."""
    candidates = [
        ("gateway.registry_path", config.gateway.registry_path),
        ("sink.jsonl_path", config.sink.jsonl_path),
        ("queue.path", config.queue.path),
        ("queue.key_path", config.queue.key_path),
        ("alarms.events_path", config.alarms.events_path),
        ("ota.reboot_request_path", config.ota.reboot_request_path),
        ("clinical.census_path", config.clinical.census_path),
        ("clinical.consent_path", config.clinical.consent_path),
        ("console.users_path", config.console.users_path),  # `bedside console-user` writes it
        ("audit.journal_path", config.audit.journal_path),
        *_device_files(config, written=True),
    ]
    return [(k, p) for k, p in candidates if p]


def _read_files(config: Config) -> list[tuple[str, str]]:
    """Files the gateway only reads (rules, certificates, keys)."""
    out = [("alarms.rules_path", config.alarms.rules_path)]
    for section, obj in (("uplink", config.uplink), ("ota", config.ota)):
        out += [(f"{section}.{k}", getattr(obj, k)) for k in ("ca_path", "cert_path", "key_path")]
    out.append(("ota.root_path", config.ota.root_path))
    out += [
        (f"clinical.adt_tls_{k}", getattr(config.clinical, f"adt_tls_{k}"))
        for k in ("ca_path", "cert_path", "key_path")
    ]
    # The web console's TLS files (a separate process, same config): wrong ones are found here too.
    out += [(f"console.{k}", getattr(config.console, k)) for k in ("cert_path", "key_path", "client_ca_path")]
    out.append(("audit.key_path", config.audit.key_path))
    out += _device_files(config, written=False)
    return [(k, p) for k, p in out if p]


def _device_files(config: Config, *, written: bool) -> list[tuple[str, str]]:
    """A device's `*_path` keys; a setting marked `written=True` is one the gateway writes."""
    out = []
    for i, dev in enumerate(config.devices):
        fields = table_fields(type(dev))
        for key, value in table_values(dev).items():
            if key.endswith("_path") and bool(fields[key][0].metadata.get("written")) == written:
                out.append((f"{item_key('devices', i, dev)}.{key}", value))
    return out


def _check_parents(key: str, path: Path, fail: Fail, *, writable: bool = False) -> None:
    # The nearest existing ancestor must be a directory, or nothing can be created
    # below it; and, for what the gateway creates, one this user may write to (a
    # read-only mount or another owner's directory would fail only at run time).
    for parent in path.absolute().parents:
        try:
            mode = parent.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there (or below a file): look further up
        except OSError as exc:
            fail(key, f"{path}: cannot inspect {parent}: {exc.strerror}")
        if not stat.S_ISDIR(mode):
            fail(key, f"{path}: {parent} is {path_kind(mode)}, not a directory")
        if writable and not os.access(parent, os.W_OK | os.X_OK):
            fail(key, f"{path}: cannot be created, {parent} is not writable by this user")
        return


def _check_file(key: str, raw: str, fail: Fail, *, writable: bool = False) -> None:
    # A missing file is left to its owner (created on first run, or reported by
    # the uplink / listener); only the wrong kind of thing, or one the gateway
    # must write and cannot, is refused here.
    path = Path(raw)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        _check_parents(key, path, fail, writable=writable)
        return
    except OSError as exc:
        fail(key, f"{path}: cannot inspect: {exc.strerror}")
    if not stat.S_ISREG(mode):
        fail(key, f"{path} is {path_kind(mode)}, expected a regular file")
    if writable and not os.access(path, os.W_OK):
        fail(key, f"{path} is not writable by this user")


def _check_dir(key: str, raw: str, fail: Fail) -> None:
    path = Path(raw)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        _check_parents(key, path, fail)
        return
    except OSError as exc:
        fail(key, f"{path}: cannot inspect: {exc.strerror}")
    if not stat.S_ISDIR(mode):
        fail(key, f"{path} is {path_kind(mode)}, expected a directory")


def _check_not_dir(key: str, raw: str, fail: Fail) -> None:
    # A serial port may be missing (unplugged; the link reports it) but a directory never opens.
    with contextlib.suppress(OSError):
        if Path(raw).is_dir():
            fail(key, f"{raw} is a directory, not a serial port")


def _check_socket_path(key: str, raw: str, fail: Fail) -> None:
    size = len(os.fsencode(raw))
    if size > UNIX_PATH_MAX:
        fail(key, f"{size} bytes long; a Unix socket path may have at most {UNIX_PATH_MAX}")
    path = Path(raw)
    _check_parents(key, path, fail, writable=True)
    problem = socket_path_problem(path)
    if problem:
        fail(key, problem)


def _check_tls_listeners(config: Config, fail: Fail) -> None:
    # A tls:// listener fails closed without its files: say which key, not just "TLS failed".
    for i, dev in enumerate(config.devices):
        tls = dev.tls(item_key("devices", i, dev), config.uplink)
        if tls is None:
            continue
        for file in (tls.cert, tls.key, tls.ca):
            if not os.path.exists(file.path):
                fail(file.key, f"{file.path}: no such file (a tls:// listener needs it)")
        try:
            registry.tls_server_context(tls.ca.path, tls.cert.path, tls.key.path)
        except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: the key-file checks
            fail(
                tls.key.key,
                f"cannot load the listener's TLS material (cert {tls.cert.path}, "
                f"key {tls.key.path}, CA {tls.ca.path}): {' '.join(str(exc).split())}",
            )


def _check_listeners(config: Config, fail: Fail) -> None:
    # Bind every listener's address and hold them all until the last one is bound, so
    # a port in use - by another process or by two of our own devices - is found now.
    held: list[socket.socket] = []
    ports = [(f"{item_key('devices', i, dev)}.port", dev.port) for i, dev in enumerate(config.devices)]
    if config.clinical.adt_listen:  # the census feed's listener (appliance/clinical/feed.py)
        ports.append(("clinical.adt_listen", config.clinical.adt_listen))
    try:
        for key, port in ports:
            try:
                listen = parse_listen(port)
            except ValueError as exc:
                fail(key, str(exc))
            if listen is None or listen.port == 0:
                continue
            try:
                infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as exc:
                fail(key, f"cannot resolve listen address {listen.host!r}: {exc.strerror}")
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                held.append(sock)
                # As asyncio.start_server does, so a port in TIME_WAIT counts as free.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(addr)
                    # Listening, as the listener will: only then does a second bind of
                    # the same port (another of our devices) fail despite SO_REUSEADDR.
                    sock.listen(1)
                except OSError as exc:
                    where = f"{listen.host}:{listen.port}"
                    if exc.errno == errno.EADDRINUSE:
                        fail(key, f"{where}: port {listen.port} is already in use")
                    fail(key, f"cannot listen on {where}: {exc.strerror}")
    finally:
        for sock in held:
            sock.close()
