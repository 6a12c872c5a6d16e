"""The registry's protocol names stay in step with the codecs and profiles they name,
and naming a protocol imports no codec (issue #15: only what the config uses is loaded)."""

import subprocess
import sys

from appliance.core.clock import MonotonicUTC
from drivers.ble.family import BLE_PROFILE_NAMES
from drivers.ble.profiles import PROFILES
from drivers.medibus.family import MEDIBUS_PROFILES
from drivers.registry import FAMILIES, family_for, make_codec, protocols


def test_ble_profile_names_are_the_profiles():
    assert tuple(PROFILES) == BLE_PROFILE_NAMES


def test_every_protocol_makes_a_codec_of_its_family():
    assert set(protocols()) == {name for family in FAMILIES for name in family.protocols}
    assert {f"medibus-{m}" for m in MEDIBUS_PROFILES} <= set(protocols())
    for protocol in protocols():
        codec = make_codec(protocol, "d", MonotonicUTC())
        family = family_for(protocol).name
        assert family == protocol.split("-", 1)[0]
        expected = {"ble": "HexLineCodec", "hl7": "Hl7Codec", "intellivue": "IntelliVueCodec", "nonin": "NoninCodec"}
        name = "NoninSpotCodec" if protocol == "nonin-13" else expected.get(family, f"{family.capitalize()}Codec")
        assert type(codec).__name__ == name, protocol


def test_nonin_variants_keep_their_formats():
    assert make_codec("nonin", "d", MonotonicUTC()).data_format == 8  # type: ignore[attr-defined]
    assert make_codec("nonin-2", "d", MonotonicUTC()).data_format == 2  # type: ignore[attr-defined]


def test_config_and_cli_import_no_codec_transport_or_optional_stack():
    # The registry's descriptors (drivers/<family>/family.py) are loaded; nothing behind them.
    code = (
        "import sys, appliance.cli, appliance.gateway, appliance.config_checks;"
        "bad = [m for m in sys.modules if m.startswith(('gmqtt', 'bleak', 'tuf', 'dbus', 'cryptography',"
        " 'drivers.masimo.codec', 'drivers.nonin.codec', 'drivers.nonin.spot', 'drivers.datex.codec',"
        " 'drivers.intellivue.codec',"
        " 'drivers.medibus.codec', 'drivers.ble.codec', 'drivers.ble.link', 'drivers.ble.vitals',"
        " 'drivers.hl7.listener', 'drivers.hl7.codec',"
        " 'appliance.queue', 'appliance.uplink', 'ota.service', 'ota.agent'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
