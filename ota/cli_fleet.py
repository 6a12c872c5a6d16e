"""The fleet commands of `bedside ota` (parsers in ota/cli.py). Each returns its exit code;
operator mistakes raise FleetError (one line, exit 2) and change nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ota.errors import FleetError
from ota.fleet_config import check_expiry_days
from ota.repo import FleetRepo, init_fleet
from ota.rollout import RolloutPolicy

__all__ = ["FLEET_COMMANDS"]


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FleetError(f"--not-before {text!r}: not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise FleetError(f"--not-before {text!r}: give a time zone (e.g. Z)")
    return when


def _keys(args: argparse.Namespace) -> int:
    init_fleet(Path(args.dir), args.compatible, root_keys=args.root_keys, root_threshold=args.root_threshold)
    print(f"fleet keys and repository in {args.dir}; move keys/root-*.pem offline")
    return 0


def _publish(args: argparse.Namespace) -> int:
    try:
        policy = RolloutPolicy(
            percent=args.percent, cohorts=tuple(args.cohort or ()),
            not_before=_time(args.not_before) if args.not_before else None,
        )  # fmt: skip
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    repo = FleetRepo(Path(args.dir))
    name = repo.publish(Path(args.bundle), args.version, args.compatible, args.min_version, rollout=policy)
    print(f"published {name} (rollout {policy.percent} %)")
    return 0


def _rollout(args: argparse.Namespace) -> int:
    change: dict[str, Any] = {}
    if args.percent is not None:
        change["percent"] = args.percent
    if args.cohort is not None:
        change["cohorts"] = args.cohort
    if args.not_before is not None:
        change["not_before"] = _time(args.not_before).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.halt or args.resume:
        change["halted"] = args.halt
    if not change:
        raise FleetError("rollout: nothing to change (--percent, --cohort, --not-before, --halt or --resume)")
    repo = FleetRepo(Path(args.dir))
    policy = repo.set_rollout(args.release, change)
    print(f"{repo.find_release(args.release)}: rollout {json.dumps(policy.to_json(), sort_keys=True)}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    repo = FleetRepo(Path(args.dir))
    roles = repo.refresh()
    print(f"re-signed {', '.join(roles)}")
    for status in repo.status():
        print(status.line())
    return 0


def _refresh_timestamp(args: argparse.Namespace) -> int:
    days = None if args.expires_days is None else check_expiry_days("timestamp", args.expires_days)
    ts = FleetRepo(Path(args.dir)).refresh_timestamp(days=days)
    print(f"timestamp v{ts.version}, expires {ts.expires.isoformat()}")
    return 0


def _status(args: argparse.Namespace) -> int:
    statuses = FleetRepo(Path(args.dir)).status()
    for status in statuses:
        print(status.line())
    return 1 if any(s.warn for s in statuses) else 0


def _rotate(args: argparse.Namespace) -> int:
    from ota.rotate import rotate

    version = rotate(FleetRepo(Path(args.dir)), args.role, root_keys=args.root_key, new_keys=args.new_keys,
                     threshold=args.threshold)  # fmt: skip
    note = "; copy keys/root-*.pem offline, destroy keys/retired/" if args.role == "root" else ""
    print(f"rotated {args.role}: root v{version}{note}")
    return 0


def _fleet_status(args: argparse.Namespace) -> int:
    from ota.fleet_status import collect, progress, render

    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise FleetError(f"--broker {args.broker!r}: give HOST:PORT")
    for path in (args.ca, args.cert, args.key):
        if not Path(path).is_file():
            raise FleetError(f"{path}: no such file")
    repo = FleetRepo(Path(args.dir)) if args.dir else None

    def changed(box: Any) -> None:
        print(json.dumps(box.row(), sort_keys=True), flush=True)

    boxes = collect(host, int(port), (args.ca, args.cert, args.key), settle_s=args.settle, follow_s=args.follow,
                    share=args.share, on_change=changed)  # fmt: skip
    print(render(boxes, args.format))
    if repo is not None:
        for rel in progress(boxes.values(), repo.load("targets").signed.targets, datetime.now(UTC)):
            print(rel.line(len(boxes)))
    return 0


FLEET_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "keys": _keys,
    "publish": _publish,
    "rollout": _rollout,
    "refresh": _refresh,
    "refresh-timestamp": _refresh_timestamp,
    "status": _status,
    "rotate": _rotate,
    "fleet-status": _fleet_status,
}
