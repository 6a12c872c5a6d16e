import dataclasses
import re
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import Config, ConfigError, DeviceConfig, device_types, load_config, parse_config
from appliance.core.settings import table_fields
from drivers import registry
from drivers.serial.line import SerialDevice

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[gateway]
bed_id = "ICU-1"
[[devices]]
id = "m1"
protocol = "masimo"
port = "/dev/ttyUSB0"
"""


def test_minimal_config_gets_documented_defaults():
    cfg = parse_config(GOOD)
    serial = cfg.devices[0]
    assert isinstance(serial, SerialDevice)
    dev = serial.line
    assert (dev.baud, dev.bytesize, dev.parity, dev.stopbits) == (9600, 8, "N", 1.0)
    assert not dev.rtscts and not dev.xonxoff and dev.exclusive
    assert cfg.supervisor.shutdown_timeout_s == 5.0
    assert isinstance(cfg.gateway.max_clock_skew_s, float)


def test_example_config_is_valid_and_is_the_one_in_the_readme():
    example = ROOT / "examples" / "gateway.toml"
    cfg = load_config(example)
    assert [d.protocol for d in cfg.devices] == [
        "masimo", "nonin-2", "intellivue", "datex", "medibus-evita4", "hl7", "ble-heart-rate", "ble-glucose",
    ]  # fmt: skip
    assert example.read_text() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ('protocol = "datex"\nbaud = 19200\nparity = "N"\nrtscts = true', 'devices["d"].parity: GE S/5 is 8E1'),
        ('protocol = "datex"\nbaud = 19200\nparity = "E"', 'devices["d"].rtscts: GE S/5 needs RTS/CTS'),
        ('protocol = "datex"\nbaud = 9600\nparity = "E"\nrtscts = true', 'devices["d"].baud: GE S/5 runs at 19200'),
        ('protocol = "intellivue"', 'devices["d"].baud: IntelliVue MIB/RS-232 runs at 115200 8N1'),
    ],
)
def test_fixed_port_profiles_are_enforced(tmp_path, device, message):
    path = tmp_path / "g.toml"
    path.write_text(f'[gateway]\nbed_id = "B"\n[[devices]]\nid = "d"\nport = "/dev/ttyS0"\n{device}\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)
    ok = device.replace('parity = "N"', 'parity = "E"').replace("baud = 9600", "baud = 19200")
    if "rtscts" not in ok and "datex" in ok:
        ok += "\nrtscts = true"
    ok = ok.replace('protocol = "intellivue"', 'protocol = "intellivue"\nbaud = 115200')
    path.write_text(f'[gateway]\nbed_id = "B"\n[[devices]]\nid = "d"\nport = "/dev/ttyS0"\n{ok}\n')
    assert load_config(path).devices[0].protocol in ("datex", "intellivue")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("surprise = 1", 'g.toml: devices["m1"].surprise: unknown key'),
        ("baud = 9601", 'g.toml: devices["m1"].baud: must be one of'),
        ('stale_after_s = "5"', 'g.toml: devices["m1"].stale_after_s: must be a number, not str'),
        ("rtscts = 1", 'g.toml: devices["m1"].rtscts: must be a boolean, not int'),
        ("stale_after_s = 0", 'g.toml: devices["m1"].stale_after_s: must be at least 0.1'),
        ('timezone = "Mars/Olympus"', 'g.toml: devices["m1"].timezone: unknown time zone'),
        ('parity = "X"', 'g.toml: devices["m1"].parity: must be one of'),
        ("reopen_min_s = 5.0\nreopen_max_s = 1.0", 'g.toml: devices["m1"].reopen_max_s: must not be below'),
        ("hl7_unframed = true", 'g.toml: devices["m1"].hl7_unframed: only for an hl7 device on a serial port'),
    ],
)
def test_bad_device_values_name_file_and_key(extra, message):
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD + extra + "\n", "g.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "g.toml: gateway: missing required key"),
        ("[gateway]\n", "g.toml: gateway.bed_id: missing required key"),
        ("[gateway]\nbed_id = 3\n", "g.toml: gateway.bed_id: must be a string"),
        ('[gateway]\nbed_id = "b"\n[other]\n', "g.toml: other: unknown key"),
        ('[gateway]\nbed_id = "b"\nlog_level = "loud"\n', "g.toml: gateway.log_level: must be one of"),
        ("gateway = 1\n", "g.toml: gateway: must be a table"),
        ('[gateway]\nbed_id = "b"\ndevices = 1\n', "g.toml: gateway.devices: unknown key"),
        (
            '[gateway]\nbed_id = "b"\n[sink]\nmax_pending = 1\n',
            "g.toml: sink.max_pending: must be at least 10",
        ),
        ("bed_id = = 1", "g.toml: not valid TOML"),
    ],
)
def test_bad_gateway_sections(text, message):
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(text, "g.toml")


def test_duplicate_ids_and_ports_are_rejected():
    twice = GOOD + GOOD.split('[gateway]\nbed_id = "ICU-1"\n')[1]
    with pytest.raises(ConfigError, match=r"devices\[1\]\.id: duplicate device id 'm1'"):
        parse_config(twice, "g.toml")
    other_id = twice.replace('id = "m1"', 'id = "m2"', 1)
    with pytest.raises(ConfigError, match=r"devices\[\"m1\"\]\.port: port .* is already used by device .m2."):
        parse_config(other_id, "g.toml")


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_alarm_pattern_timing_outside_iec_ranges_names_the_key():
    with pytest.raises(ConfigError, match=r"g.toml: alarms.high_flash_hz: must be at most 2.8"):
        parse_config('[gateway]\nbed_id = "b"\n[alarms]\nhigh_flash_hz = 3.5\n', "g.toml")


def _float_fields() -> list[tuple[str, str]]:
    """(table, key) of every float field of every config table, found by introspection
    so a field added later is covered too."""
    out = []
    for top in dataclasses.fields(Config):
        hint = typing.get_type_hints(Config)[top.name]
        cls = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if not dataclasses.is_dataclass(cls):
            continue
        if cls is DeviceConfig:  # every transport's device type, its parts' keys included
            keys = {k for c in device_types() for k, (_, h) in table_fields(c).items() if h is float}
            out += [("devices", k) for k in sorted(keys)]
            continue
        out += [(top.name, f.name) for f in dataclasses.fields(cls) if typing.get_type_hints(cls)[f.name] is float]
    return out


FLOAT_FIELDS = _float_fields()


# A device of each transport kind, for keys only that transport's devices take.
DEVICES = {
    "serial": '[[devices]]\nid = "m1"\nprotocol = "masimo"\nport = "/dev/ttyUSB0"\n',
    "radio": '[[devices]]\nid = "m1"\nprotocol = "ble-heart-rate"\nport = "ble:C0:FF:EE:00:00:01"\n',
    "listener": '[[devices]]\nid = "m1"\nprotocol = "hl7"\nport = "tcp://127.0.0.1:2575"\n',
}


def _config_with(table: str, key: str, literal: str) -> str:
    device = DEVICES["serial"]
    if table == "devices":
        device = DEVICES[next(t.kind for t in registry.transports() if key in table_fields(t.device))]
    if table == "devices":
        return f'[gateway]\nbed_id = "b"\n{device}{key} = {literal}\n'
    if table == "gateway":
        return f'[gateway]\nbed_id = "b"\n{key} = {literal}\n{device}'
    return f'[gateway]\nbed_id = "b"\n[{table}]\n{key} = {literal}\n'


def test_float_fields_include_the_alarm_path_timers():
    assert {("alarms", "tick_s"), ("devices", "stale_after_s"), ("gateway", "max_clock_skew_s")} <= set(FLOAT_FIELDS)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FLOAT_FIELDS), literal=st.sampled_from(["nan", "+nan", "-nan", "inf", "+inf", "-inf"]))
def test_every_float_field_refuses_non_finite_values_in_one_line(field, literal):
    # nan passes every min/max comparison; a nan timer crash-loops the task using it.
    table, key = field
    where = 'devices["m1"]' if table == "devices" else table
    with pytest.raises(ConfigError) as err:
        parse_config(_config_with(table, key, literal), "g.toml")
    assert str(err.value).startswith(f"g.toml: {where}.{key}: must be a finite number"), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spelling", ["./{tmp}/m1", "{tmp}/x/../m1", "{tmp}/link", "{tmp}//m1"])
def test_one_serial_port_under_two_names_is_rejected(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "x").mkdir()
    (tmp_path / "tmp" / "m1").touch()
    (tmp_path / "tmp" / "link").symlink_to(tmp_path / "tmp" / "m1")
    second = spelling.format(tmp="tmp")
    text = (
        f'[gateway]\nbed_id = "b"\n[[devices]]\nid = "a"\nprotocol = "masimo"\nport = "tmp/m1"\n'
        f'[[devices]]\nid = "b"\nprotocol = "masimo"\nport = "{second}"\n'
    )
    with pytest.raises(ConfigError, match=r"^g.toml: devices\[\"b\"\].port: port .* is already used by device 'a'$"):
        parse_config(text, "g.toml")


def test_unframed_hl7_is_refused_on_a_tcp_listener():
    text = '[gateway]\nbed_id = "b"\n[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "tcp://127.0.0.1:2575"\n'
    with pytest.raises(ConfigError, match=r"devices\[\"h\"\]\.hl7_unframed: only for an hl7 device on a serial port"):
        parse_config(text + "hl7_unframed = true\n", "g.toml")
    assert parse_config(text.replace("tcp://127.0.0.1:2575", "/dev/ttyUSB0") + "hl7_unframed = true\n").devices[0]
