"""`bedside hil run SUITE.toml --target local|vm|ssh://[user@]HOST[:PORT] --report DIR`.

Exit codes: 0 every expectation held, 1 one did not (or a scenario could not run, or
the box could not be reached), 2 bad input (a suite the bench cannot play, an unknown target): one line, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hil.suite.spec import Scenario, Suite, SuiteError, load_suite

if TYPE_CHECKING:
    from rich.progress import Progress

    from hil.suite.runner import ScenarioRun

__all__ = ["DEFAULT_SUITE", "VM_SUITE", "add_run_parser", "run_suite_command"]

DEFAULT_SUITE: Final = Path(__file__).with_name("default.toml")
VM_SUITE: Final = Path(__file__).with_name("vm.toml")
TARGETS: Final = ("local", "vm")  # and ssh://[user@]HOST[:PORT] with --bench
VM_READY_TIMEOUT_S: Final = 300.0  # after the unit started: the uplink's first status at the broker


def add_run_parser(hil_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = hil_sub.add_parser("run", help="run a scenario suite against a gateway and write a report")
    run.add_argument("suite", nargs="?", default=str(DEFAULT_SUITE), help="suite file (default: the packaged one)")
    run.add_argument(
        "--target",
        default="local",
        help="local (bedside run here), vm (the image under QEMU) or ssh://[user@]HOST[:PORT] (a box on the bench)",
    )
    run.add_argument("--bench", default="", help="ssh: the bench file (broker address, cables, service commands)")
    run.add_argument("--image", default="", help="vm: image/build's output folder (bedside-amd64.img, rootfs.sqfs)")
    run.add_argument("--fleet", default="", help="the fleet (bedside ota keys --dir, the image's --signing)")
    run.add_argument("--release", default="", help="vm: the RAUC bundle an ota step publishes to the fleet")
    run.add_argument("--report", required=True, help="directory for report.html, junit.xml, summary.json")
    run.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    run.add_argument("--duration", type=float, default=None, help="soak: every scenario runs this many hours")


def _select(suite: Suite, names: list[str], hours: float | None) -> Suite:
    scenarios = suite.scenarios
    if names:
        known = {s.name for s in scenarios}
        if unknown := [n for n in names if n not in known]:
            raise SuiteError(f"--scenario: unknown {unknown[0]!r}; known: {', '.join(sorted(known))}")
        scenarios = tuple(s for s in scenarios if s.name in names)
    if hours is not None:
        if hours <= 0:
            raise SuiteError("--duration: hours must be > 0")
        scenarios = tuple(replace(s, duration_s=max(s.duration_s, hours * 3600)) for s in scenarios)
    return replace(suite, scenarios=scenarios)


Play = Callable[[Scenario, Callable[[float], None]], Awaitable["ScenarioRun"]]


async def _each(suite: Suite, progress: Progress, play: Play) -> list[ScenarioRun]:
    runs = []
    for scenario in suite.scenarios:
        task = progress.add_task(scenario.name, total=1.0)

        def advance(fraction: float, task: int = task) -> None:
            progress.update(task, completed=fraction)  # type: ignore[arg-type]

        run = await play(scenario, advance)
        progress.update(task, completed=1.0, description=f"{scenario.name}: {'pass' if run.ok else 'FAIL'}")
        runs.append(run)
    return runs


async def _play_local(suite: Suite, report: Path, progress: Progress) -> list[ScenarioRun]:
    from hil.broker import make_pki
    from hil.suite.local_box import HOST_IP
    from hil.suite.runner import run_scenario

    with tempfile.TemporaryDirectory(prefix="bedside-hil-pki-") as pki_dir:
        pki = make_pki(Path(pki_dir), (HOST_IP,))  # the broker as a partitioned gateway reaches it
        return await _each(suite, progress, lambda s, f: run_scenario(s, report / "scenarios" / s.name, pki, f))


async def _play_vm(suite: Suite, report: Path, args: argparse.Namespace, progress: Progress) -> list[ScenarioRun]:
    from hil.broker import Broker, make_pki
    from hil.suite.consumer import wait_for_gateway
    from hil.suite.runner import run_on
    from hil.suite.vm_ota import OtaBench, needs_fleet
    from hil.suite.vm_target import VM_BROKER_IP, VmTarget

    (report / "broker").mkdir(parents=True, exist_ok=True)
    ota = OtaBench(Path(args.fleet), Path(args.release), report) if needs_fleet(suite) else None
    broker = Broker(report / "broker", make_pki(report / "pki", (VM_BROKER_IP,)), persistent=True)
    await asyncio.to_thread(broker.start)
    try:
        target = VmTarget(Path(args.image), report / "vm", broker, suite.scenarios[0], ota)
    except BaseException:
        await asyncio.to_thread(broker.stop)
        if ota is not None:
            ota.stop()
        raise
    try:
        boot = progress.add_task("booting the image under QEMU", total=None)
        target.boot()
        await asyncio.to_thread(target.wait_ready)
        await wait_for_gateway(broker, VM_READY_TIMEOUT_S)
        progress.update(boot, total=1.0, completed=1.0, description="image booted, uplink connected")
        wired = target.device_port
        return await _each(
            suite,
            progress,
            lambda s, f: run_on(
                s, report / "scenarios" / s.name, broker, target, wired=wired, progress=f, faults=target
            ),
        )
    finally:
        target.shutdown()
        await asyncio.to_thread(broker.stop)


async def _play_ssh(suite: Suite, report: Path, target: str, bench_path: str, progress: Progress) -> list[ScenarioRun]:
    from hil.broker import make_pki
    from hil.suite.runner import run_scenario
    from hil.suite.ssh_box import SshBox, parse_target
    from hil.suite.ssh_target import SshRig, load_bench, login_for, restore_config, save_config

    bench = load_bench(bench_path)
    box = SshBox(login_for(*parse_target(target), bench))
    await asyncio.to_thread(box.connect)  # SshError: nothing was changed on the box
    try:
        await asyncio.to_thread(save_config, box, bench)
        with tempfile.TemporaryDirectory(prefix="bedside-hil-pki-") as pki_dir:
            pki = make_pki(Path(pki_dir), (bench.broker_host,))
            return await _each(
                suite,
                progress,
                lambda s, f: run_scenario(
                    s, report / "scenarios" / s.name, pki, f, rig_for=lambda sc, wd: SshRig(box, bench, sc, wd)
                ),
            )
    finally:
        await asyncio.to_thread(restore_config, box, bench)
        box.close()


async def _run(suite: Suite, report: Path, args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from hil.suite.report import summary, write_reports

    target = args.target
    with Progress(transient=False) as progress:
        if target == "vm":
            runs = await _play_vm(suite, report, args, progress)
        elif target.startswith("ssh://"):
            runs = await _play_ssh(suite, report, target, args.bench, progress)
        else:
            runs = await _play_local(suite, report, progress)
    data = summary(suite.name, "ssh" if target.startswith("ssh://") else target, runs)
    write_reports(report, data, runs)
    for line in data["failed"]:
        print(f"FAIL {line}", file=sys.stderr)
    for name, p in data["latency_ms"].items():
        if p["n"]:
            print(f"{name}: n={p['n']} p50={p['p50']:.1f} ms p95={p['p95']:.1f} ms p99={p['p99']:.1f} ms")
    print(f"{'PASS' if data['ok'] else 'FAIL'}: {report / 'report.html'}")
    return 0 if data["ok"] else 1


def _check_ssh(suite: Suite, args: argparse.Namespace) -> None:
    from hil.suite.ssh_box import parse_target
    from hil.suite.ssh_target import check_ssh_suite, load_bench

    try:
        parse_target(args.target)
    except ValueError as exc:
        raise SuiteError(f"--target: {exc}") from None
    if not args.bench:
        raise SuiteError("--target ssh:// needs --bench FILE (the broker address, the cables, the service commands)")
    check_ssh_suite(suite, load_bench(args.bench))


def _check_args(args: argparse.Namespace) -> tuple[Suite, Path]:
    ssh = args.target.startswith("ssh://")
    if args.target not in TARGETS and not ssh:
        raise SuiteError(f"--target: {args.target!r}; use local, vm or ssh://[user@]HOST[:PORT]")
    suite = _select(load_suite(args.suite), args.scenario, args.duration)
    if ssh:
        _check_ssh(suite, args)
    report = Path(args.report)
    if report.exists() and not report.is_dir():
        raise SuiteError(f"--report: {report} is not a directory")
    image = Path(args.image)
    if args.target == "local":
        from hil.suite.local_box import check_local_suite

        check_local_suite(suite)
    if args.target == "vm":
        from hil.suite.vm_target import check_vm_suite

        if not (image / "bedside-amd64.img").is_file() or not (image / "rootfs.sqfs").is_file():
            raise SuiteError(f"--image: {args.image!r} has no bedside-amd64.img and rootfs.sqfs (image/build --out)")
        check_vm_suite(suite, fleet=bool(args.fleet and args.release))
        if args.fleet and args.release:
            from hil.suite.vm_ota import OtaBench

            bench = OtaBench(Path(args.fleet), Path(args.release), report)  # SuiteError: cannot use them
            bench.check_newer(image / "rootfs.sqfs")
    elif args.fleet or args.release:
        raise SuiteError("--fleet/--release: only with --target vm (an ota step updates the image under QEMU)")
    return suite, report


def run_suite_command(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("gmqtt").setLevel(logging.WARNING)  # its connect/close lines would tear the progress bars
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from hil.suite.ssh_box import SshError
    from hil.suite.target import TargetError

    try:
        suite, report = _check_args(args)
    except SuiteError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(suite, report, args))
    except (SshError, TargetError) as exc:  # the box is not reachable or did not start: nothing was played
        print(f"bedside: {exc}", file=sys.stderr)
        return 1
