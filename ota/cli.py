"""`bedside ota …`: fleet side (keys, publish, rollout, refresh, status, rotate, fleet-status)
and the box's own commands (provision, status --data-dir).

Errors are one line naming what is wrong, exit 2; no tracebacks for operator mistakes.
A FleetError propagates to `bedside`'s main, which prints it with its exit code.
The fleet commands' work is in ota/cli_fleet.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "run_ota"]

_FLEET_DIR = "fleet directory (keys/, rauc/, repo/, fleet.toml)"


def _rollout_options(p: argparse.ArgumentParser, default_percent: int | None) -> None:
    p.add_argument("--percent", type=int, default=default_percent,
                   help="offer the release to this whole percent of the fleet (stable hash of the gateway id)"
                   + (f"; default {default_percent}: nobody until `bedside ota rollout`"
                      if default_percent is not None else ""))  # fmt: skip
    p.add_argument("--cohort", action="append", default=None, metavar="GATEWAY_ID",
                   help="offer it to this box whatever its bucket (repeatable; rollout replaces the list)")  # fmt: skip
    p.add_argument(
        "--not-before",
        default=None,
        metavar="TIME",
        help="no box starts it before this time (RFC 3339 with a zone, e.g. 2026-12-03T06:00:00Z)",
    )


def _fleet_parsers(ota_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = ota_sub.add_parser("keys", help="create TUF role keys, the RAUC signing PKI and an empty repository")
    keys.add_argument("--dir", required=True, help=_FLEET_DIR)
    keys.add_argument("--compatible", required=True, help="RAUC compatible the signing PKI is named after")
    keys.add_argument("--root-keys", type=int, default=1, help="how many offline root keys to make (default 1)")
    keys.add_argument("--root-threshold", type=int, default=1, help="how many of them must sign a new root")
    pub = ota_sub.add_parser("publish", help="verify a RAUC bundle (signature, format, manifest), sign it as a release")
    pub.add_argument("bundle", help="the .raucb file, as `rauc bundle` made it")
    pub.add_argument("--dir", required=True, help=_FLEET_DIR)
    pub.add_argument("--version", required=True, help="release version; must equal the bundle manifest's")
    pub.add_argument("--compatible", required=True, help="board it is for; must equal the bundle manifest's")
    pub.add_argument("--min-version", default="", help="the oldest installed version that may take this release")
    _rollout_options(pub, 0)
    roll = ota_sub.add_parser("rollout", help="change a release's staged rollout: widen, name boxes, halt, resume")
    roll.add_argument("release", help="target path (compatible/version/file) or version")
    roll.add_argument("--dir", required=True, help=_FLEET_DIR)
    _rollout_options(roll, None)
    stop = roll.add_mutually_exclusive_group()
    stop.add_argument("--halt", action="store_true", help="no box that has not started it will start it")
    stop.add_argument("--resume", action="store_true", help="lift a halt")
    ref = ota_sub.add_parser("refresh", help="cron: re-sign snapshot and timestamp, and targets when near expiry")
    ref.add_argument("--dir", required=True, help=_FLEET_DIR)
    ts = ota_sub.add_parser("refresh-timestamp", help="re-sign only the timestamp (prefer `refresh`)")
    ts.add_argument("--dir", required=True, help=_FLEET_DIR)
    ts.add_argument("--expires-days", type=float, default=None, help="validity, 0.04 to 30 days (default: fleet.toml)")
    rot = ota_sub.add_parser("rotate", help="replace a role's keys by a new root version, signed by the root keys")
    rot.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"), help="the role whose keys change")
    rot.add_argument("--dir", required=True, help=_FLEET_DIR)
    rot.add_argument("--root-key", action="append", default=[], type=Path, metavar="PEM",
                     help="a current root key (repeat up to the threshold; default keys/root-*.pem)")  # fmt: skip
    rot.add_argument("--new-keys", type=int, default=0, help="root only: how many new root keys (default: as now)")
    rot.add_argument("--threshold", type=int, default=0, help="root only: new root threshold (default: as now)")
    fs = ota_sub.add_parser("fleet-status", help="every box's version, slot, update state, error; rollout progress")
    fs.add_argument("--broker", required=True, metavar="HOST:PORT", help="MQTT broker (TLS 1.3, client certificate)")
    fs.add_argument("--ca", required=True, help="CA certificate of the broker")
    fs.add_argument("--cert", required=True, help="client certificate (a reader of bedside/#)")
    fs.add_argument("--key", required=True, help="its private key")
    fs.add_argument("--dir", default="", help=f"{_FLEET_DIR}: adds each release's rollout progress")
    fs.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output (default table)")
    fs.add_argument("--settle", type=float, default=1.0, help="seconds without a new status that end the snapshot")
    fs.add_argument("--follow", type=float, default=0.0, help="then print changes for this many seconds (JSON lines)")
    fs.add_argument("--share", default="bedside-fleet-status", help="shared-subscription group of --follow")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ota = sub.add_parser("ota", help="over-the-air updates: fleet repository and rollouts; the box's update state")
    ota_sub = ota.add_subparsers(dest="ota_command", required=True)
    _fleet_parsers(ota_sub)
    prov = ota_sub.add_parser("provision", help="first boot: make the box's key and certificate request")
    prov.add_argument("--dir", required=True, help="where box.key (0600) and box.csr go")
    prov.add_argument("--cn", default="", help="certificate name (default: box-<machine id>)")
    st = ota_sub.add_parser("status", help="with --dir: each role's expiry (exit 1 on a warning); else the box's state")
    st.add_argument("--dir", default="", help=f"{_FLEET_DIR}: show the repository's expiries")
    st.add_argument("--data-dir", default="/var/lib/bedside/ota", help="the box's OTA data directory")
    ota.set_defaults(func=run_ota)


def run_ota(args: argparse.Namespace) -> int:
    # Imported here: `bedside` builds this parser on every start, and the fleet tools
    # (tuf, cryptography, paho) are not needed by the gateway process.
    from ota.cli_fleet import FLEET_COMMANDS
    from ota.lifecycle import StateFile
    from ota.pki import provision_box

    try:
        if args.ota_command in FLEET_COMMANDS and not (args.ota_command == "status" and not args.dir):
            return FLEET_COMMANDS[args.ota_command](args)
        if args.ota_command == "provision":
            cn = args.cn or _box_name()
            made = provision_box(Path(args.dir), cn)
            print(f"{'created' if made else 'kept existing'} key and CSR for {cn} in {args.dir}")
        else:
            record = StateFile(Path(args.data_dir) / "ota.json").load()
            print(json.dumps(record.to_json(), sort_keys=True))
    except OSError as exc:  # unwritable fleet directory, missing bundle path component, …
        print(f"bedside: {exc.filename or args.ota_command}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _box_name() -> str:
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    if not machine:
        import uuid

        machine = uuid.uuid4().hex
    return f"box-{machine[:16]}"
