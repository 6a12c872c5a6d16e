"""The suite's report: `summary.json`, `junit.xml` (one testcase per expectation) and
`report.html` (one file, plots embedded; hil/suite/plots.py).

A failed expectation is named the same way in all three (`check.describe`), with the
scenario and the evidence line, so a CI log, a JUnit viewer and the HTML page point
at the same thing.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hil.suite.check import describe
from hil.suite.figures import latencies, percentiles, resources
from hil.suite.runner import ScenarioRun

__all__ = ["summary", "write_reports"]


def summary(suite: str, target: str, runs: Sequence[ScenarioRun]) -> dict[str, Any]:
    every: dict[str, list[float]] = {"local": [], "broker": []}
    scenarios: list[dict[str, Any]] = []
    for run in runs:
        lat = latencies(run.scenario, run.events)
        for where, values in lat.items():
            every[where] += values
        scenarios.append(
            {
                "name": run.scenario.name,
                "ok": run.ok,
                "error": run.error,
                "seconds": round(run.end_t - run.start_t, 3) if run.start_t else 0.0,
                "expectations": [
                    {"expect": describe(o.expect), "ok": o.ok, "detail": o.detail, "latency_ms": o.latency_ms}
                    for o in run.outcomes
                ],
                "latency_ms": {w: percentiles(v) for w, v in lat.items()},
                "resources": resources(run.samples),
                "evidence": str(run.workdir),
            }
        )
    failed: list[str] = [
        f"{s['name']}: {e['expect']}: {e['detail']}" for s in scenarios for e in s["expectations"] if not e["ok"]
    ] + [f"{s['name']}: run failed: {s['error']}" for s in scenarios if s["error"]]
    return {
        "suite": suite,
        "target": target,
        "ok": not failed and bool(runs),
        "failed": failed,
        "latency_ms": {
            "trigger_to_local_output": percentiles(every["local"]),
            "trigger_to_broker": percentiles(every["broker"]),
        },
        "scenarios": scenarios,
    }


def junit(data: dict[str, Any]) -> ET.Element:
    cases = [(s, e) for s in data["scenarios"] for e in s["expectations"]]
    root = ET.Element(
        "testsuite",
        name=f"bedside hil {data['suite']} ({data['target']})",
        tests=str(len(cases) + sum(1 for s in data["scenarios"] if s["error"])),
        failures=str(len(data["failed"])),
    )
    for scenario in data["scenarios"]:
        if scenario["error"]:
            case = ET.SubElement(root, "testcase", classname=scenario["name"], name="scenario runs")
            ET.SubElement(case, "failure", message=scenario["error"])
        for exp in scenario["expectations"]:
            case = ET.SubElement(root, "testcase", classname=scenario["name"], name=exp["expect"])
            if not exp["ok"]:
                ET.SubElement(case, "failure", message=exp["detail"]).text = f"evidence: {scenario['evidence']}"
            else:
                ET.SubElement(case, "system-out").text = exp["detail"]
    return root


def _table(scenario: dict[str, Any]) -> str:
    rows = []
    for i, exp in enumerate(scenario["expectations"]):
        mark = "pass" if exp["ok"] else "FAIL"
        anchor = f"{html.escape(scenario['name'])}-{i}"
        rows.append(
            f'<tr class="{mark.lower()}" id="{anchor}"><td>{mark}</td><td>{html.escape(exp["expect"])}</td>'
            f"<td>{html.escape(exp['detail'])}</td></tr>"
        )
    return "<table><tr><th></th><th>expectation</th><th>evidence</th></tr>" + "".join(rows) + "</table>"


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}.fail{background:#fdd}.pass{background:#efe}
.verdict{font-size:1.4em;font-weight:bold}img{max-width:100%}"""


def render_html(data: dict[str, Any], runs: Sequence[ScenarioRun]) -> str:
    from hil.suite.plots import latency_histograms, resource_plot, timeline_plot

    verdict = "PASS" if data["ok"] else "FAIL"
    parts = [
        f"<!doctype html><meta charset=utf-8><title>bedside hil {html.escape(data['suite'])}: {verdict}</title>",
        f"<style>{_STYLE}</style><h1>{html.escape(data['suite'])} on {html.escape(data['target'])}</h1>",
        f'<p class="verdict {verdict.lower()}">{verdict}</p>',
    ]
    if data["failed"]:
        parts.append("<h2>Failed</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in data["failed"]) + "</ul>")
    lat = data["latency_ms"]
    parts.append("<h2>Alarm latency (ms)</h2><table><tr><th>path</th><th>n</th><th>p50</th><th>p95</th><th>p99</th>")
    for name, p in lat.items():
        cells = "".join(f"<td>{p.get(k, float('nan')):.1f}</td>" for k in ("p50", "p95", "p99"))
        parts.append(f"<tr><td>{name}</td><td>{p['n']}</td>{cells}</tr>")
    parts.append("</table>" + latency_histograms(runs))
    for scenario, run in zip(data["scenarios"], runs, strict=True):
        res = scenario["resources"]
        parts.append(f"<h2>{html.escape(scenario['name'])}: {'pass' if scenario['ok'] else 'FAIL'}</h2>")
        if scenario["error"]:
            parts.append(f'<p class="fail">run failed: {html.escape(scenario["error"])}</p>')
        parts.append(_table(scenario))
        if res:
            parts.append(
                f"<p>CPU {res['cpu_percent']:.1f} % of a core; RSS {res['rss_first_mib']:.1f} → "
                f"{res['rss_last_mib']:.1f} MiB (max {res['rss_max_mib']:.1f}, "
                f"{res['rss_growth_mib_per_h']:+.1f} MiB/h)</p>"
            )
        parts.append(timeline_plot(run) + resource_plot(run))
        parts.append(f"<p>evidence (gateway files, broker log): <code>{html.escape(scenario['evidence'])}</code></p>")
    return "\n".join(parts)


def write_reports(report_dir: Path, data: dict[str, Any], runs: Sequence[ScenarioRun]) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    ET.ElementTree(junit(data)).write(report_dir / "junit.xml", encoding="utf-8", xml_declaration=True)
    (report_dir / "report.html").write_text(render_html(data, runs), encoding="utf-8")
