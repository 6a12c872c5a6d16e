"""`bedside` operator commands against a config or a running gateway: devices,
queue, uplink tail, alarm, stats. Each imports what it uses when it runs, so
`bedside` starts without loading the store, the uplink or the gateway. Errors of
the gateway's exception tree propagate to `appliance.cli.main`, which prints them
as one line with their exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config import load_config
from appliance.core.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, BedsideInputError

if TYPE_CHECKING:
    from appliance.queue import Store
    from appliance.registry import Registry

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "UsageError", "cmd_alarm", "cmd_devices", "cmd_queue", "cmd_stats",
           "cmd_uplink", "control_path"]  # fmt: skip


class UsageError(BedsideInputError):
    """Bad input from the user: printed as one line, exit 2."""


def _registry(args: argparse.Namespace) -> Registry:
    from appliance.registry import Registry

    if args.registry:
        return Registry(args.registry)
    if args.config:
        return Registry(load_config(args.config).gateway.registry_path)
    raise UsageError("devices: give --config FILE or --registry PATH")


def cmd_devices(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.action == "list":
        for p in registry.list():
            print(f"{p.device_id}\tbed={p.bed_id}\tpatient={p.patient_id or '-'}")
    elif args.action == "pair":
        from appliance.clinical.cli import pair

        print(pair(args, registry))
    elif args.action == "release":
        from appliance.clinical.cli import release_cmd

        print(release_cmd(args))
    elif not registry.unpair(args.device_id):
        raise UsageError(f"devices unpair: {args.device_id!r} is not in {registry.path}")
    else:
        print(f"unpaired {args.device_id}")
    return EXIT_OK


def _open_store(args: argparse.Namespace) -> Store:
    from appliance.queue import Sealer, Store, load_or_create_key

    cfg = load_config(args.config).queue
    if not cfg.path:
        raise UsageError(f"{args.config}: queue.path: not set, so there is no store")
    if not Path(cfg.path).exists():
        raise UsageError(f"{cfg.path}: no store yet (the gateway creates it on first run)")
    return Store(cfg.path, Sealer(load_or_create_key(cfg.key_path, create=False)), cfg.max_bytes, repair=False)


def cmd_queue(args: argparse.Namespace) -> int:
    from appliance.core.model import to_json_line
    from appliance.queue.queue import export

    store = _open_store(args)
    try:
        if args.queue_command == "stats":
            s = store.stats()
            print(json.dumps({
                "rows": s.rows, "records": s.records, "payload_bytes": s.payload_bytes, "max_bytes": s.max_bytes,
                "fill": round(s.fill, 4), "dropped_records": s.dropped_records, "file_bytes": s.file_bytes,
                "used_bytes": s.used_bytes, "quarantined_rows": s.quarantined_rows, "schema_version": s.schema_version,
            }, indent=1))  # fmt: skip
        else:
            count = 0
            for record in export(store):
                sys.stdout.write(to_json_line(record) + "\n")
                count += 1
            print(f"{store.path}: {count} records", file=sys.stderr)
            # Rows the gateway set aside, then rows found damaged now: named, never fatal.
            bad = store.quarantined() + store.unreadable
            if bad:
                rows = "row" if len(bad) == 1 else "rows"
                print(f"{len(bad)} {rows} quarantined: " + "; ".join(map(str, bad)), file=sys.stderr)
    finally:
        store.close()
    return EXIT_OK


def cmd_uplink(args: argparse.Namespace) -> int:
    from appliance.uplink.tail import tail
    from appliance.uplink.tls import TlsFiles

    up = load_config(args.config).uplink
    if not up.host:
        raise UsageError(f"{args.config}: uplink.host: not set, so there is no broker to tail")
    tls = TlsFiles(up.ca_path, args.cert or up.cert_path, args.key or up.key_path)
    try:
        n = asyncio.run(
            tail(
                up.host,
                up.port,
                up.tls_server_name,
                tls,
                sys.stdout,
                gateway=args.gateway,
                count=args.count,
                duration_s=args.duration,
            )
        )
    except (OSError, TimeoutError) as exc:
        print(f"bedside: cannot subscribe at {up.host}:{up.port}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{n} records", file=sys.stderr)
    return EXIT_OK


def control_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    if args.config:
        path = load_config(args.config).alarms.control_socket
        if not path:
            raise UsageError(f"{args.config}: alarms.control_socket: not set, so there is no control socket")
        return path
    raise UsageError(f"{args.command}: give --config FILE or --socket PATH")


def cmd_stats(args: argparse.Namespace) -> int:
    """The running gateway's counters as JSON (from its memory: never scans the store)."""
    from appliance.control import request

    reply = request(control_path(args), {"cmd": "stats"})
    print(json.dumps(reply.get("stats"), indent=1, sort_keys=True))
    return EXIT_OK


def cmd_alarm(args: argparse.Namespace) -> int:
    from appliance.control import request

    path = control_path(args)
    payload: dict[str, str | None] = {"cmd": args.action, "bed": args.bed, "rule": getattr(args, "rule", None)}
    if getattr(args, "badge", None):
        payload["badge"] = args.badge  # named in the audit trail with the user
    reply = request(path, payload)
    alarms = reply.get("alarms", [])
    for a in alarms:  # tab-separated; onset and device last, so older scripts' columns hold
        onset, device = a.get("onset") or "-", a.get("device_id") or "-"
        print(f"{a['bed_id']}\t{a['priority']}\t{a['state']}\t{a['rule_id']}\t{a['message']}\t{onset}\t{device}")
    if not alarms:
        print("no alarms")
    return EXIT_OK
