"""One exception tree, one table of exit codes (appliance.core.errors)."""

import pytest

from appliance.cli import main
from appliance.cli_tools import UsageError
from appliance.config import ConfigError
from appliance.control import ControlError
from appliance.core.errors import (
    EXIT_ERROR,
    EXIT_USAGE,
    BedsideConfigError,
    BedsideDeviceError,
    BedsideError,
    BedsideInputError,
    BedsideOtaError,
    BedsideRulesError,
    BedsideStoreError,
    BedsideUplinkError,
    exit_code,
)
from appliance.core.keyfiles import KeyFileError
from appliance.core.model import RecordFormatError
from appliance.queue import KeyError_, StoreError, StoreWriteError
from appliance.registry import RegistryError
from appliance.replay import ReplayError
from appliance.uplink.tls import UplinkTlsError
from drivers.ble.numbers import BleDecodeError
from drivers.hl7.listener import ListenerTlsError
from drivers.hl7.message import Hl7Error, Hl7TimeError
from drivers.intellivue.wire import MessageError
from drivers.serial.transport import PortUnavailable, PortVanished, TransportError
from ota.errors import FleetError, InstallError, OtaError, RefusedUpdate
from ota.tryboot import TrybootError
from rules.outputs import OutputError
from rules.patterns import PatternError
from rules.spec import RuleError

SUBSYSTEM = {
    ConfigError: BedsideConfigError,
    RegistryError: BedsideConfigError,
    KeyFileError: BedsideConfigError,
    UsageError: BedsideInputError,
    ReplayError: BedsideInputError,
    RecordFormatError: BedsideInputError,
    BleDecodeError: BedsideInputError,
    Hl7Error: BedsideInputError,
    Hl7TimeError: BedsideInputError,
    ListenerTlsError: BedsideInputError,
    MessageError: BedsideInputError,
    StoreError: BedsideStoreError,
    StoreWriteError: BedsideStoreError,
    KeyError_: BedsideStoreError,
    UplinkTlsError: BedsideUplinkError,
    TransportError: BedsideDeviceError,
    PortUnavailable: BedsideDeviceError,
    PortVanished: BedsideDeviceError,
    RuleError: BedsideRulesError,
    PatternError: BedsideRulesError,
    OutputError: BedsideRulesError,
    OtaError: BedsideOtaError,
    FleetError: BedsideOtaError,
    InstallError: BedsideOtaError,
    RefusedUpdate: BedsideOtaError,
    TrybootError: BedsideOtaError,
    ControlError: BedsideError,
}


@pytest.mark.parametrize(("cls", "subsystem"), SUBSYSTEM.items(), ids=lambda c: c.__name__)
def test_every_error_class_belongs_to_its_subsystem(cls: type[Exception], subsystem: type[BedsideError]):
    assert issubclass(cls, subsystem)


# What `bedside` exited with for each before the table (the README's rule: 2 for input
# the operator can fix, named in one line; 1 for the rest).
EXPECTED = {
    ConfigError("c"): EXIT_USAGE,
    UsageError("u"): EXIT_USAGE,
    RuleError("r"): EXIT_USAGE,
    ReplayError("r"): EXIT_USAGE,
    KeyError_("k"): EXIT_USAGE,
    StoreError("s"): EXIT_USAGE,
    StoreWriteError("s"): EXIT_USAGE,
    RegistryError("r"): EXIT_USAGE,
    UplinkTlsError("t"): EXIT_USAGE,
    FleetError("f"): EXIT_USAGE,
    KeyFileError("k"): EXIT_USAGE,
    ControlError("c"): EXIT_ERROR,
    PortVanished("p"): EXIT_ERROR,
    InstallError("i"): EXIT_ERROR,
    TrybootError("t"): EXIT_ERROR,
    BedsideError("b"): EXIT_ERROR,
}


@pytest.mark.parametrize(("exc", "code"), EXPECTED.items(), ids=lambda e: type(e).__name__)
def test_exit_code_table(exc: BedsideError, code: int):
    assert exit_code(exc) == code


def test_main_prints_a_bad_rule_file_as_one_line_and_exits_2(tmp_path, capsys):
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nid = "x"\nkind = "technical"\nevent = "smoke"\n')
    assert main(["rules", "check", str(rules)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"bedside: {rules}: rule 'x': event: must be one of ") and err.count("\n") == 1


def test_main_prints_an_unreachable_gateway_as_one_line_and_exits_1(tmp_path, capsys):
    assert main(["stats", "--socket", str(tmp_path / "none.sock")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("bedside: ") and err.count("\n") == 1
