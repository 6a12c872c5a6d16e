"""The operator commands' parsers: devices, rules, queue, uplink, alarm, top, console.

Every subcommand and option carries help text (`tests/appliance/test_cli_help.py`
walks the whole tree). The command functions live in appliance/cli_tools.py and
appliance/top.py; each imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

from appliance.cli_tools import cmd_alarm, cmd_devices, cmd_queue, cmd_uplink

__all__ = ["add_operator_parsers"]

if TYPE_CHECKING:
    _Sub: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
CONFIG_FOR_SOCKET = "gateway config (for the control socket path)"
SOCKET = "control socket path (instead of --config)"


def add_operator_parsers(sub: _Sub) -> None:
    _devices(sub)
    _rules(sub)
    _queue_and_uplink(sub)
    _alarm(sub)
    _top_and_console(sub)


def _devices(sub: _Sub) -> None:
    dev = sub.add_parser("devices", help="device registry: which bed and patient each device is paired to")
    dev.add_argument("--config", help="gateway config (for the registry path)")
    dev.add_argument("--registry", help="registry file (instead of --config)")
    dev_sub = dev.add_subparsers(dest="action", required=True)
    dev_sub.add_parser("list", help="every paired device with its bed and patient")
    from appliance.clinical.cli import add_device_parsers  # pair (checked against the census), release

    add_device_parsers(dev_sub)
    unpair = dev_sub.add_parser("unpair", help="remove a device's pairing (its data is quarantined again)")
    unpair.add_argument("device_id", help="the device's id from the config")
    dev.set_defaults(func=cmd_devices)


def _rules(sub: _Sub) -> None:
    from appliance.cli import cmd_rules

    rules = sub.add_parser("rules", help="alarm rule files: check, replay")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate a rule file (exit 2 naming the rule and key)")
    check.add_argument("file", help="rule file (TOML), e.g. rules/default_adult.toml")
    rep = rules_sub.add_parser("replay", help="observations (JSON lines) through rules, alarm events out")
    rep.add_argument("--rules", required=True, help="rule file (TOML)")
    rep.add_argument("file", nargs="?", default="-", help="observations as JSON lines, or - for stdin")
    rules.set_defaults(func=cmd_rules)


def _queue_and_uplink(sub: _Sub) -> None:
    queue_p = sub.add_parser("queue", help="the store-and-forward queue: stats, export")
    queue_p.add_argument("--config", required=True, help="gateway config (for the store path and key)")
    queue_sub = queue_p.add_subparsers(dest="queue_command", required=True)
    queue_sub.add_parser("stats", help="rows, records, bytes and fill per class")
    queue_sub.add_parser("export", help="every stored record as JSON lines, alarms first")
    queue_p.set_defaults(func=cmd_queue)

    uplink = sub.add_parser("uplink", help="the MQTT uplink: tail")
    uplink_sub = uplink.add_subparsers(dest="uplink_command", required=True)
    tail_p = uplink_sub.add_parser("tail", help="subscribe and print records as JSON lines (deduplicated)")
    tail_p.add_argument("--config", required=True, help="gateway config (for the broker address and CA)")
    tail_p.add_argument("--cert", help="consumer certificate (default: the config's)")
    tail_p.add_argument("--key", help="consumer key (default: the config's)")
    tail_p.add_argument("--gateway", default="+", help="one gateway id (default: all)")
    tail_p.add_argument("--count", type=int, default=None, help="exit after this many records")
    tail_p.add_argument("--duration", type=float, default=None, help="exit after this many seconds")
    uplink.set_defaults(func=cmd_uplink)


def _alarm(sub: _Sub) -> None:
    alarm = sub.add_parser("alarm", help="operator control of the running gateway's alarms")
    alarm.add_argument("--config", help=CONFIG_FOR_SOCKET)
    alarm.add_argument("--socket", help=SOCKET)
    alarm_sub = alarm.add_subparsers(dest="action", required=True)
    listing = alarm_sub.add_parser("list", help="alarms that are not inactive: bed, priority, state, rule, text")
    listing.add_argument("--bed", default=None, help="only this bed")
    ack = alarm_sub.add_parser("ack", help="acknowledge (all alarms, or one bed / rule)")
    ack.add_argument("--bed", default=None, help="only this bed")
    ack.add_argument("--rule", default=None, help="only this rule id (or rule:flag@device for a device alarm)")
    pause = alarm_sub.add_parser("pause", help="audio pause (120 s by default; the visual signal stays)")
    pause.add_argument("--bed", default=None, help="only this bed")
    for action in (ack, pause):
        action.add_argument(
            "--badge", default=None, help="your badge id, recorded with your user name in the audit trail"
        )
    alarm.set_defaults(func=cmd_alarm)


def _top_and_console(sub: _Sub) -> None:
    from appliance.view import KEYS

    top = sub.add_parser(
        "top",
        help="live view of a running gateway (alarms, beds, devices, events) over its control socket",
        description="The same view as `bedside demo`, of the gateway behind the control socket. " + KEYS,
    )
    top.add_argument("--config", help=CONFIG_FOR_SOCKET)
    top.add_argument("--socket", help=SOCKET)
    top.add_argument("--once", action="store_true", help="print one frame and exit (no keys)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between frames (default 1)")
    top.set_defaults(func=_cmd_top)

    console = sub.add_parser(
        "console",
        help="local web console (HTTPS) for the clinical engineer: live view, acknowledge, pairing",
        description="Serves the live view of the gateway behind the control socket over HTTPS on the "
        "management address only ([console] in the config).",
    )
    console.add_argument("--config", required=True, help="gateway config ([console] and the control socket)")
    console.set_defaults(func=_cmd_console)
    firewall = sub.add_parser(
        "firewall",
        help="the box's nftables ruleset from the site config (default drop; prints it, or --apply loads it)",
        description="Inbound: only the listeners, console and SSH subnets the config enables; outbound: the "
        "broker, fleet and FHIR servers, DNS, NTP, DHCP. --apply loads it atomically with nft (root); on a bad "
        "config it loads the base ruleset (nothing inbound) and exits 2.",
    )
    firewall.add_argument("--config", required=True, help="gateway (site) config")
    firewall.add_argument("--apply", action="store_true", help="load it with `nft -f` instead of printing it")
    firewall.set_defaults(func=_cmd_firewall)
    timesync = sub.add_parser(
        "timesync",
        help="the NTP client's servers from the site config ([time] ntp_servers; prints it, or --apply writes it)",
        description="Renders the systemd-timesyncd drop-in for the site's NTP servers (no fallback servers). "
        "--apply writes it (the image's bedside-timesync.service, before systemd-timesyncd); on a bad config it "
        "writes one without servers and exits 2.",
    )
    timesync.add_argument("--config", required=True, help="gateway (site) config")
    timesync.add_argument("--apply", action="store_true", help="write the drop-in instead of printing it")
    timesync.add_argument("--out", default="/run/systemd/timesyncd.conf.d/bedside.conf", help="where --apply writes")
    timesync.set_defaults(func=_cmd_timesync)
    users = sub.add_parser("console-user", help="add or change a local operator login for the web console")
    users.add_argument("--config", required=True, help="gateway config ([console] users_path)")
    users.add_argument("name", help="operator user name")
    users.add_argument("--password-stdin", action="store_true", help="read the password from stdin (no prompt)")
    users.set_defaults(func=_cmd_console_user)


def _cmd_top(args: argparse.Namespace) -> int:
    from appliance.top import cmd_top

    return cmd_top(args)


def _cmd_console(args: argparse.Namespace) -> int:
    from appliance.console.server import cmd_console

    return cmd_console(args)


def _cmd_firewall(args: argparse.Namespace) -> int:
    from appliance.firewall import cmd_firewall

    return cmd_firewall(args)


def _cmd_timesync(args: argparse.Namespace) -> int:
    from appliance.ntp import cmd_timesync

    return cmd_timesync(args)


def _cmd_console_user(args: argparse.Namespace) -> int:
    from appliance.console.users import cmd_console_user

    return cmd_console_user(args)
