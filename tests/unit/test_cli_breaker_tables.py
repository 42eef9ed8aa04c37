"""`reynolds agents status` shows each pool's breaker and the downstreams that are held."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from reynolds.entrypoints.cli import render


def text(table: Table) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(table)
    return console.export_text()


def test_an_open_pool_shows_when_its_probe_goes() -> None:
    pools = [
        {"type": "code", "replicas": 3, "circuit": "open", "breaker": {"reopensInSeconds": 12.5}},
        {"type": "devops", "replicas": 2, "circuit": "closed", "breaker": {}},
    ]
    shown = text(render.pools_table(pools))
    assert "open (probe in 12.5 s)" in shown
    assert "closed" in shown and "closed (" not in shown


def test_downstreams_show_their_breaker_and_their_limit() -> None:
    rows = [
        {
            "downstream": "http:http://127.0.0.1:8080",
            "inFlight": 3,
            "breaker": {"state": "closed", "failuresInRow": 0},
            "limiter": {"limit": 3.4, "ceiling": 12.0, "heldForSeconds": 1.5, "overloads": 9},
        },
        {
            "downstream": "exec:curl",
            "inFlight": 0,
            "breaker": {"state": "open", "failuresInRow": 5, "reopensInSeconds": 30.0},
            "limiter": None,
        },
    ]
    shown = text(render.downstreams_table(rows))
    assert "3.4 of 12.0, held 1.5 s" in shown
    assert "exec:curl" in shown and "open (probe in 30 s)" in shown
