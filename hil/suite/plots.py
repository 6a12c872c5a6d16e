"""The report's plots as embedded PNG images (matplotlib, Agg: no display needed).

Per scenario: a timeline per bed of the vitals the gateway recorded, its alarm
events and the bench's steps (faults); the gateway's CPU and RSS over the run.
For the suite: histograms of trigger -> local output and trigger -> broker latency.
"""

from __future__ import annotations

import base64
import io
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hil.suite.figures import latencies
from hil.suite.runner import ScenarioRun

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["latency_histograms", "resource_plot", "timeline_plot"]

_SHORT = {"MDC_PULS_OXIM_SAT_O2": "SpO2 %", "MDC_PULS_OXIM_PULS_RATE": "pulse /min"}
_COLOURS = {"high": "red", "medium": "orange", "low": "gold"}


def _figure(rows: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.6 * rows), layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=False)[:, 0]


def _img(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def timeline_plot(run: ScenarioRun) -> str:
    if not run.start_t:
        return ""
    beds = sorted({d.bed for d in run.scenario.devices})
    fig, axes = _figure(len(beds))
    t0 = run.start_t
    for ax, bed in zip(axes, beds, strict=True):
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for e in run.events:
            if (
                e.source == "local"
                and e.kind == "obs"
                and e.data.get("bed_id") == bed
                and e.data.get("value") is not None
            ):
                series[_SHORT.get(e.data["metric"], e.data["metric"])].append((e.t - t0, float(e.data["value"])))
        for name, points in sorted(series.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1, drawstyle="steps-post")
        for e in run.events:
            if e.source == "local" and e.kind == "alarm" and e.data.get("bed_id") == bed:
                colour = _COLOURS.get(e.data.get("priority", ""), "grey")
                marker = "v" if e.data.get("state") == "cleared" else "^"
                ax.plot([e.t - t0], [ax.get_ylim()[0]], marker, color=colour)
                if e.data.get("state") == "active":
                    ax.annotate(e.data.get("rule_id", ""), (e.t - t0, ax.get_ylim()[0]), fontsize=7, rotation=30)
            elif e.kind == "step" and e.data.get("action") != "snapshot":
                ax.axvline(e.t - t0, color="purple", linestyle=":", linewidth=1)
                ax.annotate(e.data["action"], (e.t - t0, ax.get_ylim()[1]), fontsize=7, color="purple", rotation=30)
        ax.set_title(f"bed {bed}: vitals, alarms (▲ raised ▼ cleared), steps (dotted)", fontsize=9)
        ax.set_xlabel("s since start")
        if series:
            ax.legend(fontsize=7, loc="center right")
    return _img(fig)


def resource_plot(run: ScenarioRun) -> str:
    if len(run.samples) < 2:
        return ""
    fig, (ax,) = _figure(1)
    t0 = run.start_t or run.samples[0].t
    xs = [s.t - t0 for s in run.samples]
    ax.plot(xs, [s.rss_bytes / 2**20 for s in run.samples], color="tab:blue")
    ax.set_ylabel("RSS MiB", color="tab:blue")
    cpu = ax.twinx()
    pairs = list(itertools.pairwise(run.samples))
    cpu.plot(
        [b.t - t0 for _, b in pairs],
        [max(0.0, b.cpu_s - a.cpu_s) / max(b.t - a.t, 1e-6) * 100 for a, b in pairs],
        color="tab:red",
        linewidth=0.8,
    )
    cpu.set_ylabel("CPU % of a core", color="tab:red")
    ax.set_title("gateway process", fontsize=9)
    ax.set_xlabel("s since start")
    return _img(fig)


def latency_histograms(runs: Sequence[ScenarioRun]) -> str:
    every: dict[str, list[float]] = {"local": [], "broker": []}
    for run in runs:
        for where, values in latencies(run.scenario, run.events).items():
            every[where] += values
    if not any(every.values()):
        return "<p>no alarm latencies (no alarm expectation after a step held an alarm)</p>"
    fig, axes = _figure(2)
    for ax, (where, values) in zip(axes, every.items(), strict=True):
        ax.hist(values, bins=30)
        ax.set_title(f"trigger → {'local output' if where == 'local' else 'broker'} (ms), n={len(values)}", fontsize=9)
    return _img(fig)
