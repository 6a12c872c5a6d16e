"""`bedside hil run SUITE.toml --target local --report DIR`.

Exit codes: 0 every expectation held, 1 one did not (or a scenario could not run),
2 bad input (a suite the bench cannot play, an unknown target): one line, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Final

from hil.suite.spec import Suite, SuiteError, load_suite

__all__ = ["DEFAULT_SUITE", "add_run_parser", "run_suite_command"]

DEFAULT_SUITE: Final = Path(__file__).with_name("default.toml")
TARGETS: Final = ("local",)  # vm and ssh:// are named by the issue and not built yet


def add_run_parser(hil_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = hil_sub.add_parser("run", help="run a scenario suite against a gateway and write a report")
    run.add_argument("suite", nargs="?", default=str(DEFAULT_SUITE), help="suite file (default: the packaged one)")
    run.add_argument("--target", default="local", help="local (bedside run here); vm and ssh://HOST: not yet")
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


async def _run(suite: Suite, report: Path, target: str) -> int:
    from rich.progress import Progress, TaskID

    from hil.broker import make_pki
    from hil.suite.report import summary, write_reports
    from hil.suite.runner import ScenarioRun, run_scenario

    runs: list[ScenarioRun] = []
    with tempfile.TemporaryDirectory(prefix="bedside-hil-pki-") as pki_dir:
        pki = make_pki(Path(pki_dir))
        with Progress(transient=False, console=None) as progress:
            for scenario in suite.scenarios:
                task = progress.add_task(scenario.name, total=1.0)

                def advance(fraction: float, task: TaskID = task) -> None:
                    progress.update(task, completed=fraction)

                run = await run_scenario(scenario, report / "scenarios" / scenario.name, pki, advance)
                progress.update(task, completed=1.0, description=f"{scenario.name}: {'pass' if run.ok else 'FAIL'}")
                runs.append(run)
    data = summary(suite.name, target, runs)
    write_reports(report, data, runs)
    for line in data["failed"]:
        print(f"FAIL {line}", file=sys.stderr)
    lat = data["latency_ms"]
    for name, p in lat.items():
        if p["n"]:
            print(f"{name}: n={p['n']} p50={p['p50']:.1f} ms p95={p['p95']:.1f} ms p99={p['p99']:.1f} ms")
    print(f"{'PASS' if data['ok'] else 'FAIL'}: {report / 'report.html'}")
    return 0 if data["ok"] else 1


def run_suite_command(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("gmqtt").setLevel(logging.WARNING)  # its connect/close lines would tear the progress bars
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        if args.target not in TARGETS:
            raise SuiteError(f"--target: {args.target!r} is not supported yet; use local")
        suite = _select(load_suite(args.suite), args.scenario, args.duration)
        report = Path(args.report)
        if report.exists() and not report.is_dir():
            raise SuiteError(f"--report: {report} is not a directory")
    except SuiteError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(suite, report, args.target))
