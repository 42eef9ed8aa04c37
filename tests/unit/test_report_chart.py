"""The experiment report's PNG: a valid 1200 × 800 image holding the makespan distribution of
every variant and a Gantt chart per variant with one bar per attempt."""

from __future__ import annotations

import struct
from typing import Any

from matplotlib.patches import Rectangle

from reynolds.adapters.charts import report_figure, report_png


def variant(name: str, bars: list[tuple[str, float, float, bool]]) -> dict[str, Any]:
    return {
        "name": name,
        "makespans": [4.0, 4.2, 3.9],
        "gantt": [
            {"subtask": s, "attempt": 1, "pool": "code", "start": a, "end": b, "ok": ok}
            for s, a, b, ok in bars
        ],
    }


REPORT = {
    "name": "how wide",
    "report": {"repetitions": 3},
    "variants": [
        variant("one", [("a", 0, 1, True), ("b", 1, 2, False), ("b", 2.5, 3.5, True)]),
        variant("two", [("a", 0, 1, True), ("b", 0, 1, True)]),
    ],
}


def bars_of(axes: Any) -> list[Rectangle]:
    return [p for p in axes.patches if isinstance(p, Rectangle)]


def test_the_figure_has_the_distributions_and_a_gantt_bar_per_attempt() -> None:
    figure = report_figure(REPORT)
    spread, first, second = figure.axes
    assert [t.get_text() for t in spread.get_xticklabels()] == ["one", "two"]
    assert spread.get_ylabel() == "makespan (s)"
    assert len(bars_of(first)) == 3 and len(bars_of(second)) == 2
    failed = [b for b in bars_of(first) if b.get_facecolor()[0] > 0.8]  # the red one
    assert len(failed) == 1 and failed[0].get_x() == 1
    assert [t.get_text() for t in first.get_yticklabels()] == ["a", "b"]
    assert first.get_xlabel() == "seconds"


def test_the_png_is_a_valid_image_of_1200_by_800() -> None:
    png = report_png(REPORT)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (1200, 800)
