"""Start-up checks against the machine: path kinds, sockets, listener ports."""

import dataclasses
import os
import re
import socket
import stat
import typing
from pathlib import Path

import pytest

from appliance.config import Config, ConfigError, DeviceConfig, device_types, parse_config
from appliance.config_checks import UNIX_PATH_MAX, startup_checks
from appliance.core.settings import table_fields

# Keys naming a file the gateway writes or reads, and where each lives in the TOML.
FILE_KEYS = {
    "gateway.registry_path": "[gateway]",
    "sink.jsonl_path": "[sink]",
    "queue.path": "[queue]",
    "queue.key_path": "[queue]",
    "alarms.events_path": "[alarms]",
    "alarms.rules_path": "[alarms]",
    "uplink.ca_path": "[uplink]",
    "uplink.cert_path": "[uplink]",
    "uplink.key_path": "[uplink]",
    "ota.root_path": "[ota]",
    "ota.ca_path": "[ota]",
    "ota.cert_path": "[ota]",
    "ota.key_path": "[ota]",
    "ota.reboot_request_path": "[ota]",
    "console.cert_path": "[console]",
    "console.key_path": "[console]",
    "console.client_ca_path": "[console]",
    "console.users_path": "[console]",
    'devices["h"].tls_cert_path': "[[devices]]",
    'devices["h"].tls_key_path': "[[devices]]",
    'devices["h"].tls_ca_path': "[[devices]]",
    'devices["h"].seen_path': "[[devices]]",
    "clinical.census_path": "[clinical]",
    "clinical.consent_path": "[clinical]",
    "clinical.adt_tls_ca_path": "[clinical]",
    "clinical.adt_tls_cert_path": "[clinical]",
    "clinical.adt_tls_key_path": "[clinical]",
    "audit.journal_path": "[audit]",
    "audit.key_path": "[audit]",
}


def config(tmp: Path, **values: str) -> Config:
    """A config with every file under `tmp`, overridden by `values` (dotted key -> path)."""
    tables: dict[str, dict[str, str]] = {
        "[gateway]": {"bed_id": "B", "registry_path": str(tmp / "registry.json")},
        "[queue]": {"key_path": str(tmp / "store.key")},
        "[ota]": {"data_dir": str(tmp / "ota")},
        "[audit]": {"key_path": str(tmp / "box.key")},  # signs only with journal_path (then loaded at start)
        "[[devices]]": {"id": "h", "protocol": "hl7", "port": "tcp://127.0.0.1:0"},
    }
    for dotted, value in values.items():
        key = dotted.rsplit(".", 1)[1]
        table = FILE_KEYS.get(dotted) or ("[alarms]" if dotted.startswith("alarms.") else "[[devices]]")
        tables.setdefault(table, {})[key] = value
    text = "".join(f"{t}\n" + "".join(f"{k} = {v!r}\n" for k, v in kv.items()) for t, kv in tables.items())
    return parse_config(text.replace("'", '"'), "g.toml")


def check(cfg: Config) -> str:
    with pytest.raises(ConfigError) as err:
        startup_checks(cfg, "g.toml")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_every_path_field_is_checked_at_start_up():
    # A path field added later must be added to the start-up checks (and to FILE_KEYS).
    paths = set()
    for top in dataclasses.fields(Config):
        hint = typing.get_type_hints(Config)[top.name]
        cls = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if cls is DeviceConfig:  # every transport's device type, its parts' keys included
            paths |= {f'devices["h"].{k}' for c in device_types() for k in table_fields(c) if k.endswith("_path")}
        elif dataclasses.is_dataclass(cls):
            paths |= {f"{top.name}.{f.name}" for f in dataclasses.fields(cls) if f.name.endswith("_path")}
    assert paths | {"queue.path"} == set(FILE_KEYS)


def test_a_clean_config_passes(tmp_path):
    startup_checks(config(tmp_path), "g.toml")


@pytest.mark.parametrize("key", sorted(FILE_KEYS))
def test_a_directory_where_a_file_belongs_names_the_key(tmp_path, key):
    (tmp_path / "d").mkdir()
    message = check(config(tmp_path, **{key: str(tmp_path / "d")}))
    assert message == f"g.toml: {key}: {tmp_path / 'd'} is a directory, expected a regular file"


@pytest.mark.parametrize("key", ["queue.path", "sink.jsonl_path", "alarms.control_socket"])
def test_a_file_where_a_parent_directory_belongs_names_the_key(tmp_path, key):
    (tmp_path / "f").write_text("data")
    message = check(config(tmp_path, **{key: str(tmp_path / "f" / "sub" / "x")}))
    assert message.startswith(f"g.toml: {key}: {tmp_path / 'f' / 'sub' / 'x'}: {tmp_path / 'f'} is a regular file")


def test_ota_data_dir_must_be_a_directory(tmp_path):
    (tmp_path / "ota").write_text("")
    assert check(config(tmp_path)).startswith("g.toml: ota.data_dir:")


def test_a_serial_port_naming_a_directory_is_refused(tmp_path):
    cfg = config(tmp_path, **{'devices["h"].protocol': "masimo", 'devices["h"].port': str(tmp_path)})
    assert check(cfg) == f'g.toml: devices["h"].port: {tmp_path} is a directory, not a serial port'


def test_control_socket_naming_a_regular_file_is_refused_and_the_file_kept(tmp_path):
    store = tmp_path / "store.db"
    store.write_bytes(b"3661 records")
    message = check(config(tmp_path, **{"alarms.control_socket": str(store)}))
    assert message == f"g.toml: alarms.control_socket: {store} is a regular file, not a socket; refusing to replace it"
    assert store.read_bytes() == b"3661 records"


def test_control_socket_naming_a_directory_is_refused(tmp_path):
    assert "is a directory, not a socket" in check(config(tmp_path, **{"alarms.control_socket": str(tmp_path)}))


def test_control_socket_stale_is_accepted_but_a_live_one_is_refused(tmp_path):
    path = tmp_path / "c.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        assert "another process is listening" in check(config(tmp_path, **{"alarms.control_socket": str(path)}))
    # Closed without unlinking: a stale socket file nobody listens on, as after a crash.
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    startup_checks(config(tmp_path, **{"alarms.control_socket": str(path)}), "g.toml")


def test_control_socket_path_beyond_the_af_unix_limit_is_refused(tmp_path):
    fits = tmp_path / ("s" * (UNIX_PATH_MAX - len(os.fsencode(tmp_path)) - 1))
    assert len(os.fsencode(fits)) == UNIX_PATH_MAX
    startup_checks(config(tmp_path, **{"alarms.control_socket": str(fits)}), "g.toml")
    too_long = str(fits) + "x"
    assert check(config(tmp_path, **{"alarms.control_socket": too_long})) == (
        f"g.toml: alarms.control_socket: {UNIX_PATH_MAX + 1} bytes long; a Unix socket path may have at most 107"
    )


def test_a_listener_port_in_use_is_refused(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = check(config(tmp_path, **{'devices["h"].port': f"tcp://127.0.0.1:{port}"}))
    assert message == f'g.toml: devices["h"].port: 127.0.0.1:{port}: port {port} is already in use'


def test_two_listeners_on_one_port_are_refused(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = (
        f'[gateway]\nbed_id = "B"\nregistry_path = "{tmp_path / "r.json"}"\n[ota]\ndata_dir = "{tmp_path}"\n'
        f'[[devices]]\nid = "a"\nprotocol = "hl7"\nport = "tcp://0.0.0.0:{port}"\n'
        f'[[devices]]\nid = "b"\nprotocol = "hl7"\nport = "tcp://127.0.0.1:{port}"\n'
    )
    assert check(parse_config(text, "g.toml")).startswith(f'g.toml: devices["b"].port: 127.0.0.1:{port}: port {port}')
    # The check holds nothing once done: the gateway can bind the port itself.
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("0.0.0.0", port))


def _tls_config(tmp: Path, pki_dir: Path, **files: str) -> Config:
    paths = {"tls_cert_path": "broker.pem", "tls_key_path": "broker.key", "tls_ca_path": "ca.pem", **files}
    lines = "".join(f'{k} = "{pki_dir / v}"\n' for k, v in paths.items())
    text = (
        f'[gateway]\nbed_id = "B"\nregistry_path = "{tmp / "r.json"}"\n[ota]\ndata_dir = "{tmp}"\n'
        f'[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "tls://127.0.0.1:0"\n{lines}'
    )
    return parse_config(text, "g.toml")


def test_tls_listener_material_is_loaded_at_start_up(tmp_path):
    from hil.broker import make_pki

    pki = make_pki(tmp_path / "pki")
    startup_checks(_tls_config(tmp_path, pki.dir), "g.toml")
    assert check(_tls_config(tmp_path, pki.dir, tls_key_path="nope.key")) == (
        f'g.toml: devices["h"].tls_key_path: {pki.dir / "nope.key"}: no such file (a tls:// listener needs it)'
    )
    (pki.dir / "garbage.pem").write_text("not a certificate\n")
    message = check(_tls_config(tmp_path, pki.dir, tls_cert_path="garbage.pem"))
    assert message.startswith('g.toml: devices["h"].tls_key_path: cannot load the listener\'s TLS material (cert ')


@pytest.mark.parametrize("key", ["sink.jsonl_path", "queue.path", "alarms.events_path", "alarms.control_socket"])
def test_what_the_gateway_writes_must_be_writable_before_ready(tmp_path, key):
    """The outside tester's unwritable directories: a control socket that crash-loops,
    a sink that loses every record. A read-only file system stands in for another
    owner's directory (root may write anywhere else)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        message = check(config(tmp_path, **{key: str(ro / "sub" / "x")}))
        assert message == f"g.toml: {key}: {ro / 'sub' / 'x'}: cannot be created, {ro} is not writable by this user"
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


@pytest.mark.parametrize("port", ["TCP://127.0.0.1:2575", "Tls://127.0.0.1:2575", "udp://127.0.0.1:2575"])
def test_a_network_port_is_never_taken_for_a_serial_path(port):
    from drivers.hl7.listener import parse_listen

    text = f'[gateway]\nbed_id = "B"\n[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "{port}"\n'
    if port.startswith("udp"):
        with pytest.raises(ConfigError, match=r"devices\[\"h\"\]\.port: .*not udp://"):
            parse_config(text, "g.toml")
    else:
        assert parse_listen(port) is not None


# -- the alarm co-processor ([alarms] coproc_*) ------------------------------------------


def _coproc_config(tmp_path: Path, keys: str) -> Config:
    return parse_config(
        f'[gateway]\nbed_id = "B"\nregistry_path = "{tmp_path / "r.json"}"\n[alarms]\n{keys}\n', "g.toml"
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("coproc_heartbeat_s = 5.0", "g.toml: alarms.coproc_heartbeat_s:"),
        ("coproc_baud = 1234", "g.toml: alarms.coproc_baud:"),
        ('coproc_version = ""', "g.toml: alarms.coproc_version:"),
        ("coproc_timeout = 3", "g.toml: alarms.coproc_timeout: unknown key"),
    ],
)
def test_coproc_keys_are_checked_with_the_other_alarm_keys(tmp_path, keys, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _coproc_config(tmp_path, keys)


def test_coproc_firmware_dir_must_hold_a_firmware_and_the_port_must_not_be_a_device(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    cfg = _coproc_config(tmp_path, f'coproc_port = "{tmp_path / "tty"}"\ncoproc_firmware_dir = "{fw}"')
    with pytest.raises(ConfigError, match=re.escape(f"alarms.coproc_firmware_dir: {fw}: no main.py")):
        startup_checks(cfg, "g.toml")
    (fw / "main.py").write_text("")
    (fw / "bsc_proto.py").write_text('FW_VERSION = "1.0.0"\n')
    startup_checks(cfg, "g.toml")
    shared = (
        f'coproc_port = "{tmp_path / "tty"}"\n[[devices]]\nid = "d"\nprotocol = "masimo"\nport = "{tmp_path / "tty"}"'
    )
    with pytest.raises(ConfigError, match=r"alarms.coproc_port: .* is a device's port"):
        startup_checks(_coproc_config(tmp_path, shared), "g.toml")
    with pytest.raises(ConfigError, match=r"alarms.coproc_port: .* is a directory"):
        startup_checks(_coproc_config(tmp_path, f'coproc_port = "{fw}"'), "g.toml")
