"""An experiment's report as a PNG (matplotlib, no display): the makespan distribution of each
variant, and a Gantt chart of one run of each — a bar per attempt, a row per subtask."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

# A Figure made without pyplot draws with Agg, in memory: no display, no global state.
from matplotlib.figure import Figure

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 8.0, 100  # 1200 × 800 pixels
_OK, _FAILED = "#4C78A8", "#E45756"


def report_figure(report: Mapping[str, Any]) -> Figure:
    """The figure: distributions on top, one Gantt chart per variant below."""
    variants: Sequence[Mapping[str, Any]] = report.get("variants") or []
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    grid = figure.add_gridspec(2, max(len(variants), 1), height_ratios=(1, 1.4))
    spread = figure.add_subplot(grid[0, :])
    names = [str(v.get("name")) for v in variants]
    spread.boxplot([v.get("makespans") or [0.0] for v in variants], tick_labels=names)
    spread.set_ylabel("makespan (s)")
    spread.set_title(
        f"{report.get('name', 'experiment')}: makespan of each run "
        f"({(report.get('report') or {}).get('repetitions', '?')} runs per variant)"
    )
    for column, variant in enumerate(variants):
        gantt(figure.add_subplot(grid[1, column]), variant)
    return figure


def gantt(axes: Any, variant: Mapping[str, Any]) -> None:
    """One bar per attempt of the variant's first run, a row per subtask (red: failed)."""
    bars: Sequence[Mapping[str, Any]] = variant.get("gantt") or []
    rows: dict[str, int] = {}
    for bar in bars:
        rows.setdefault(str(bar["subtask"]), len(rows))
    for bar in bars:
        start, end = float(bar["start"]), float(bar["end"])
        axes.barh(
            rows[str(bar["subtask"])],
            max(end - start, 1e-9),
            left=start,
            color=_OK if bar.get("ok", True) else _FAILED,
            edgecolor="white",
        )
    axes.set_title(f"{variant.get('name')}: one run")
    axes.set_xlabel("seconds")
    axes.set_ylabel("subtask")
    if len(rows) <= 20:
        axes.set_yticks(list(rows.values()), list(rows))
    axes.invert_yaxis()


def report_png(report: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    report_figure(report).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
