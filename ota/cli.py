"""`bedside ota …`: fleet side (keys, publish, refresh-timestamp) and the box's status.

Errors are one line naming what is wrong, exit 2; no tracebacks for operator mistakes.
A FleetError propagates to `bedside`'s main, which prints it with its exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "run_ota"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ota = sub.add_parser("ota", help="over-the-air updates: fleet keys, publishing; the box's update state")
    ota_sub = ota.add_subparsers(dest="ota_command", required=True)
    keys = ota_sub.add_parser("keys", help="create TUF role keys, the RAUC signing PKI and an empty repository")
    keys.add_argument("--dir", required=True, help="fleet directory (keys/, rauc/, repo/)")
    keys.add_argument("--compatible", required=True, help="RAUC compatible the signing PKI is named after")
    keys.add_argument("--root-keys", type=int, default=1, help="number of offline root keys (default 1)")
    keys.add_argument("--root-threshold", type=int, default=1, help="root signatures required (default 1)")
    pub = ota_sub.add_parser("publish", help="add a RAUC bundle as a signed release")
    pub.add_argument("bundle", help="the RAUC bundle (.raucb) to publish")
    pub.add_argument("--dir", required=True, help="fleet directory (from `ota keys`)")
    pub.add_argument("--version", required=True, help="release version (must match the bundle)")
    pub.add_argument("--compatible", required=True, help="RAUC compatible (must match the bundle)")
    pub.add_argument("--min-version", default="", help="the oldest installed version that may take this release")
    ts = ota_sub.add_parser("refresh-timestamp", help="re-sign timestamp metadata before it expires (cron)")
    ts.add_argument("--dir", required=True, help="fleet directory")
    ts.add_argument("--expires-days", type=float, default=None, help="timestamp lifetime (default 1 day)")
    prov = ota_sub.add_parser("provision", help="first boot: make the box's key and certificate request")
    prov.add_argument("--dir", required=True, help="where to write the key (0600) and the request")
    prov.add_argument("--cn", default="", help="certificate name (default: box-<machine id>)")
    st = ota_sub.add_parser("status", help="the box's update lifecycle record")
    st.add_argument("--data-dir", default="/var/lib/bedside/ota", help="the agent's data directory")
    ota.set_defaults(func=run_ota)


def run_ota(args: argparse.Namespace) -> int:
    # Imported here: `bedside` builds this parser on every start, and the fleet tools
    # (tuf, cryptography) are not needed by the gateway process.
    from ota.lifecycle import StateFile
    from ota.pki import provision_box
    from ota.repo import FleetRepo, init_fleet

    try:
        if args.ota_command == "keys":
            init_fleet(Path(args.dir), args.compatible, root_keys=args.root_keys, root_threshold=args.root_threshold)
            print(f"fleet keys and repository in {args.dir}; move keys/root-*.pem offline")
        elif args.ota_command == "publish":
            name = FleetRepo(Path(args.dir)).publish(Path(args.bundle), args.version, args.compatible, args.min_version)
            print(f"published {name}")
        elif args.ota_command == "refresh-timestamp":
            ts = FleetRepo(Path(args.dir)).refresh_timestamp(days=args.expires_days)
            print(f"timestamp v{ts.version}, expires {ts.expires.isoformat()}")
        elif args.ota_command == "provision":
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
