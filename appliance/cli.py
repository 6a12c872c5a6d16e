"""The `bedside` command line.

Exit codes: 0 ok, 2 usage or bad input (one line naming the file, key or
offset), 1 anything else; `appliance.core.errors.exit_code` decides them for every
error of the gateway's own exception tree. No traceback for bad input. `demo` and `hil` live in
the bench package and are imported only when asked for, so the box image can
ship without them. Every subcommand imports its own modules: `bedside
run` loads the store, the uplink, a family's codec and OTA only when the config uses them, and
the operator commands (`alarm`, `stats`) load none of the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import logging.handlers
import queue
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli_parsers import add_operator_parsers
from appliance.cli_tools import (
    UsageError,
    cmd_stats,
)
from appliance.config import load_config
from appliance.core.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, BedsideError, exit_code
from appliance.view import KEYS
from drivers import registry

if TYPE_CHECKING:
    from appliance.gateway import Gateway

__all__ = ["main"]


def _setup_logging(level: str) -> None:
    """Log records are queued and written to stderr by a listener thread: a slow or
    stalled journald pipe must not block the event loop, which carries the alarm path."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, stream)
    listener.start()
    atexit.register(listener.stop)  # flushes what is queued at exit
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper()))
    root.addHandler(logging.handlers.QueueHandler(records))


def _install_loop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _run_until_signal(gateway: Gateway) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await gateway.run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.config_checks import startup_checks
    from appliance.gateway import Gateway
    from appliance.timesync import kernel_clock

    config = load_config(args.config)
    # Paths, ports and sockets against this machine, before anything starts: a wrong
    # one is exit 2 naming the key, not a task crash-looping behind a READY gateway.
    startup_checks(config, args.config)
    _setup_logging(config.gateway.log_level)
    _install_loop()
    gateway = Gateway(config, kernel_clock())
    # The entry point composes the process: the OTA agent joins the gateway's supervisor
    # (only with [ota] configured: tuf is not loaded otherwise); without it, a box booted
    # from a RAUC slot still confirms that slot when healthy (ota/confirm.py).
    if config.ota.server_url:
        from ota.service import attach

        attach(gateway)
    else:
        from ota.confirm import attach_confirm

        attach_confirm(gateway)
    clean = asyncio.run(_run_until_signal(gateway))
    return EXIT_OK if clean else EXIT_ERROR


def cmd_decode(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from appliance.decode import decode_stream

    try:
        tz = ZoneInfo(args.device_tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--device-tz: unknown time zone {args.device_tz!r}") from None
    name = "<stdin>" if args.file == "-" else args.file
    try:
        source = sys.stdin.buffer if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        with source:
            summary = decode_stream(args.protocol, source, sys.stdout, tz, device_id=args.device_id)
    except OSError as exc:
        raise UsageError(f"{name}: read failed: {exc.strerror}") from None
    if summary.nothing_decoded:  # a wrong --protocol or a file of noise is bad input: exit 2
        print(f"bedside: {name}: {summary.line()}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{name}: {summary.line()}", file=sys.stderr)
    return EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    from appliance.replay import replay
    from rules.spec import load_rules

    if args.rules_command == "check":
        ruleset = load_rules(args.file)
        kinds = sorted({r.kind for r in ruleset.rules})
        print(f"{args.file}: {len(ruleset.rules)} rules ok ({', '.join(kinds)})")
        return EXIT_OK
    ruleset = load_rules(args.rules)
    name = "<stdin>" if args.file == "-" else args.file
    try:
        source = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        with source:
            count = replay(ruleset, source, sys.stdout, name)
    except (UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{name}: cannot read: {exc}") from None
    print(f"{name}: {count} alarm events", file=sys.stderr)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from hil.demo import run_demo

    _setup_logging("warning")
    _install_loop()
    return run_demo(duration_s=args.duration, workdir=args.workdir, speed=args.speed, keep=not args.discard)


def cmd_hil(args: argparse.Namespace) -> int:
    from hil.cli import run_hil

    _setup_logging("info")
    _install_loop()
    return run_hil(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bedside", description="Bedside medical-device gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway (systemd runs this)")
    run.add_argument("--config", required=True, help="TOML config file (see examples/gateway.toml)")
    run.set_defaults(func=cmd_run)

    dec = sub.add_parser("decode", help="raw device bytes in, canonical JSON lines out")
    dec.add_argument(
        "--protocol", required=True, choices=registry.protocols(),
        help="; ".join(f"{f.name}: {f.summary}" for f in registry.FAMILIES if f.summary),
    )  # fmt: skip
    dec.add_argument("--device-tz", default="UTC", help="zone of the device clock (default UTC)")
    dec.add_argument("--device-id", default="decode", help="device id written into the records (default decode)")
    dec.add_argument("file", nargs="?", default="-", help="capture file, or - for stdin")
    dec.set_defaults(func=cmd_decode)

    add_operator_parsers(sub)
    stats = sub.add_parser("stats", help="the running gateway's counters (frames, drops, loop lag, store, latency)")
    stats.add_argument("--config", help="gateway config (for the control socket path)")
    stats.add_argument("--socket", help="control socket path (instead of --config)")
    stats.set_defaults(func=cmd_stats)

    demo = sub.add_parser(
        "demo",
        help="simulated bedside with the real gateway and a live view",
        description="A whole bedside on this machine: simulated devices of every family, the real gateway, "
        "a local broker if mosquitto is installed, and the live view. " + KEYS,
    )
    demo.add_argument("--duration", type=float, default=None, help="seconds, then exit (default: until q or Ctrl-C)")
    demo.add_argument("--speed", type=float, default=1.0, help="run the vital-sign scenarios this much faster")
    demo.add_argument(
        "--workdir", default=None, help="where to keep config, records, alarms and the store (default: demo-runs/TIME)"
    )
    demo.add_argument("--discard", action="store_true", help="use a temporary directory and delete it at the end")
    demo.set_defaults(func=cmd_demo)

    from appliance.clinical.cli import add_consent_parser

    add_consent_parser(sub)
    from appliance.clinical.audit_cli import add_parsers as add_audit_parsers

    add_audit_parsers(sub)
    _add_bench_parser(sub)
    from ota.cli import add_parser as add_ota_parser

    add_ota_parser(sub)
    return parser


def _add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`bedside hil …`: the bench builds its own commands (one simulator per family
    that has one, from the registry); an image without the bench has no `hil`."""
    try:
        from hil.cli import add_parser
    except ImportError:
        return
    hil = add_parser(sub)
    hil.set_defaults(func=cmd_hil)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BedsideError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
