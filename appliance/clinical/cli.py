"""The clinical plane's operator commands: pairing checked against the census,
release of held quarantine, consent.

- `bedside devices pair DEVICE --bed B [--patient P] [--wristband W]`: with a
  census (`[clinical] census_path`), the device is paired to the census patient
  of bed B; a patient id or wristband string given must be one of that patient's
  identifiers, otherwise refused in one line (exit 2). Without a census the
  patient is taken as typed.
- `bedside devices release DEVICE [--badge ID]`: asks the running gateway
  (control socket) to release the device's held quarantine to its patient.
- `bedside consent list | set PATIENT granted|withheld`: the consent file; the
  running gateway picks a change up within `consent_poll_s`.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from appliance.clinical.consent import Consent, ConsentBook
from appliance.clinical.files import load_json, update_json
from appliance.config import load_config
from appliance.core.errors import BedsideInputError

if TYPE_CHECKING:
    from appliance.registry import Registry

__all__ = ["add_consent_parser", "add_device_parsers", "cmd_consent", "pair", "release_cmd"]


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def pair(args: argparse.Namespace, registry: Registry) -> str:
    """Pair as asked (appliance/pairing.py's checks), against the census when the config
    has one; the line to print."""
    from appliance.pairing import pair_device

    config = load_config(args.config) if args.config else None
    known = [d.id for d in config.devices] if config else None
    census_path = config.clinical.census_path if config else ""
    p = pair_device(registry, args.device_id, args.bed, args.patient, known, census_path=census_path,
                    wristband=args.wristband, by=_operator())  # fmt: skip
    checked = " (census)" if census_path else ""
    return f"paired {p.device_id} to bed {p.bed_id}, patient {p.patient_id or '-'}{checked}"


def release_cmd(args: argparse.Namespace) -> str:
    from appliance.control import request

    if not args.config:
        raise BedsideInputError("devices release: give --config FILE (the running gateway's control socket)")
    sock = load_config(args.config).alarms.control_socket
    if not sock:
        raise BedsideInputError(f"{args.config}: alarms.control_socket: not set, so the gateway cannot be asked")
    reply = request(sock, {"cmd": "release", "device": args.device_id, "badge": args.badge or ""}, timeout_s=30.0)
    return f"released {reply['released']} held observations of {args.device_id} to patient {reply['patient']}"


def add_device_parsers(dev_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`devices pair` and `devices release`."""
    pair = dev_sub.add_parser(
        "pair", help="pair a device to a bed and its patient (with a census: the bed's census patient, else refused)"
    )
    pair.add_argument("device_id", help="the device's id from the config ([[devices]] id)")
    pair.add_argument("--bed", required=True, help="bed id")
    pair.add_argument(
        "--patient", default=None,
        help="patient id; with a census it must be one of the bed's patient's identifiers "
        "(omit without a census: the device's data stays quarantined)",
    )  # fmt: skip
    pair.add_argument("--wristband", default=None, help="wristband scan string, checked against the census")
    release = dev_sub.add_parser(
        "release", help="give a device's held quarantine to its census patient (the running gateway does it, audited)"
    )
    release.add_argument("device_id", help="the device's id from the config")
    release.add_argument("--badge", default=None, help="operator badge id, recorded in the audit trail")


def add_consent_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consent = sub.add_parser("consent", help="per-patient consent to send their data off the box")
    consent.add_argument("--config", required=True, help="gateway config (for [clinical] consent_path)")
    consent_sub = consent.add_subparsers(dest="consent_command", required=True)
    consent_sub.add_parser("list", help="every patient with a recorded decision")
    set_p = consent_sub.add_parser("set", help="record a patient's decision (local alarms always run)")
    set_p.add_argument("patient", help="patient id (as in the census)")
    set_p.add_argument("state", choices=[c.value for c in Consent], help="granted: sent; withheld: kept on the box")
    consent.set_defaults(func=cmd_consent)


def cmd_consent(args: argparse.Namespace) -> int:
    clinical = load_config(args.config).clinical
    if not clinical.consent_path:
        raise BedsideInputError(f"{args.config}: clinical.consent_path: not set, so consent cannot be recorded")
    default = Consent(clinical.default_consent)
    if args.consent_command == "list":
        book = ConsentBook.from_json(load_json(clinical.consent_path), default, clinical.consent_path)
        for patient, entry in sorted(book.entries().items()):
            print(f"{patient}\t{entry.state.value}\t{entry.source}")
        return 0
    source = f"operator:{_operator()}"

    def change(data: Any) -> Any:
        book = ConsentBook.from_json(data, default, clinical.consent_path)
        book.set(args.patient, Consent(args.state), source, int(time.time() * 1000))
        return book.to_json()

    update_json(clinical.consent_path, change)
    print(f"consent of {args.patient}: {args.state} ({source})")
    return 0
