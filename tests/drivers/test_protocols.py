"""The protocol name tables stay in step with the codecs and profiles they name, and
naming a protocol imports no codec (issue #15: only what the config uses is loaded)."""

import subprocess
import sys

from drivers.ble.profiles import PROFILES
from drivers.protocols import BLE_PROFILE_NAMES, MEDIBUS_PROFILES, PROTOCOLS
from drivers.serial import CODECS, make_codec


def test_ble_profile_names_are_the_profiles():
    assert tuple(PROFILES) == BLE_PROFILE_NAMES


def test_every_protocol_makes_a_codec_of_its_family():
    assert set(CODECS) == PROTOCOLS
    assert {f"medibus-{m}" for m in MEDIBUS_PROFILES} <= PROTOCOLS
    for protocol in PROTOCOLS:
        codec = make_codec(protocol, "d")
        family = protocol.split("-", 1)[0]
        expected = {"ble": "HexLineCodec", "hl7": "Hl7Codec", "intellivue": "IntelliVueCodec", "nonin": "NoninCodec"}
        assert type(codec).__name__ == expected.get(family, f"{family.capitalize()}Codec"), protocol


def test_nonin_variants_keep_their_formats():
    assert make_codec("nonin", "d").data_format == 8  # type: ignore[attr-defined]
    assert make_codec("nonin-2", "d").data_format == 2  # type: ignore[attr-defined]


def test_config_and_cli_import_no_codec_transport_or_optional_stack():
    code = (
        "import sys, appliance.cli, appliance.gateway, appliance.config_checks;"
        "bad = [m for m in sys.modules if m.startswith(('gmqtt', 'bleak', 'tuf', 'dbus', 'cryptography',"
        " 'drivers.serial.masimo', 'drivers.serial.nonin', 'drivers.serial.datex', 'drivers.serial.intellivue',"
        " 'drivers.serial.medibus', 'drivers.ble', 'drivers.hl7.listener', 'drivers.hl7.codec',"
        " 'appliance.queue', 'appliance.uplink', 'ota.service', 'ota.agent'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
