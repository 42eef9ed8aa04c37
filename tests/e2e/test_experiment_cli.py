"""`reynolds experiment run | list | show` against a running server."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cli_support import Server, output

SCENARIO = {
    "name": "seventeen tools",
    "task": {
        "type": "tool-migration",
        "components": [f"tool{i:02d}" for i in range(17)],
        "steps": [
            {
                "name": "migrate",
                "estimatedSeconds": 1,
                "action": {"kind": "shell", "argv": ["sleep", "1"]},
            }
        ],
    },
    "strategies": [
        {"name": "one at a time", "approach": "direct"},
        {"name": "parallel", "maxConcurrency": 5},
    ],
}


def test_a_scenario_file_is_run_shown_as_a_table_and_stored(
    live_server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "seventeen.yaml"
    path.write_text(yaml.safe_dump({"scenario": SCENARIO}))
    done = live_server.run("experiment", "run", str(path), "--seed", "42")
    assert done.returncode == 0, output(done)
    text = done.stdout
    assert "| parallel | parallel_optimized | 5 | 30 | 4.000 |" in text
    assert "| one at a time | direct | 1 | 30 | 17.000 |" in text
    assert "parallel is faster than every other variant" in text
    assert "winner: parallel; simulate mode, 30 runs per variant, α = 0.05, seed 42" in text
    shown = live_server.run("experiment", "list", "--json")
    found = json.loads(shown.stdout)["experiments"]
    mine = next(e for e in found if e["name"] == "seventeen tools")
    again = live_server.run("experiment", "show", mine["experimentId"], "--json")
    assert json.loads(again.stdout)["winner"] == "parallel"


def test_a_file_without_a_scenario_exits_2_saying_why(live_server: Server, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just a list\n")
    done = live_server.run("experiment", "run", str(path))
    assert done.returncode == 2
    assert "expected a scenario" in output(done)


def test_execute_mode_runs_for_real_and_waits_for_the_report(
    live_server: Server, tmp_path: Path
) -> None:
    naps = {
        "name": "real naps",
        "task": {
            "type": "naps",
            "components": ["a", "b"],
            "steps": [{"name": "nap", "action": {"kind": "shell", "argv": ["sleep", "0.05"]}}],
        },
        "strategies": [{"name": "one", "approach": "direct"}, {"name": "two", "maxConcurrency": 2}],
    }
    path = tmp_path / "naps.json"
    path.write_text(json.dumps(naps))
    done = live_server.run(
        "experiment", "run", str(path), "--mode", "execute", "--repetitions", "2"
    )
    assert done.returncode == 0, output(done)
    assert "execute mode, 2 runs per variant" in done.stdout
    assert "| one | direct | 1 | 2 |" in done.stdout


def test_cancelling_an_experiment_that_is_not_running_exits_1(live_server: Server) -> None:
    done = live_server.run("experiment", "cancel", "no-such-experiment")
    assert done.returncode == 1
    assert "no experiment no-such-experiment" in output(done)


def test_calibrate_prints_each_variants_predicted_and_measured_makespan(
    live_server: Server, tmp_path: Path
) -> None:
    naps = {
        "name": "calibration",
        "task": {
            "type": "calibration-naps",
            "components": ["a", "b"],
            "steps": [
                {
                    "name": "nap",
                    "estimatedSeconds": 0.3,
                    # `0.30`: an argv no other test on the shared server taught it a time for.
                    "action": {"kind": "shell", "argv": ["sleep", "0.30"]},
                }
            ],
        },
        "strategies": [{"name": "one", "approach": "direct"}, {"name": "two", "maxConcurrency": 2}],
    }
    path = tmp_path / "calibrate.yaml"
    path.write_text(yaml.safe_dump(naps))
    done = live_server.run("experiment", "calibrate", str(path), "--repetitions", "2", "--json")
    assert done.returncode == 0, output(done)
    rows = {r["variant"]: r for r in json.loads(done.stdout)["calibration"]}
    assert set(rows) == {"one", "two"}
    assert rows["one"]["predictedSeconds"] == 0.6 and rows["two"]["predictedSeconds"] == 0.3
    for row in rows.values():  # measured for real: the naps, plus what running them costs
        assert row["measuredSeconds"] >= row["predictedSeconds"]
        assert (
            row["error"]
            == (row["predictedSeconds"] - row["measuredSeconds"]) / row["measuredSeconds"]
        )
