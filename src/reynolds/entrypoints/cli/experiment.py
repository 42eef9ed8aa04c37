"""`reynolds experiment run FILE | list | show ID`: compare strategies on a task."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.progress import Progress

from reynolds.entrypoints.cli import render
from reynolds.entrypoints.cli.client import ReynoldsClient
from reynolds.entrypoints.cli.state import CliState, print_json, state

POLL_S = 0.5
experiment_app = typer.Typer(
    help="Compare strategies on a task: simulated, or executed for real.", no_args_is_help=True
)


class Mode(StrEnum):
    SIMULATE = "simulate"
    EXECUTE = "execute"


def read_scenario(path: Path) -> dict[str, Any]:
    """The scenario FILE holds (JSON or YAML; the scenario itself or `{scenario: ...}`)."""
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if isinstance(document, dict) and set(document) == {"scenario"}:
        document = document["scenario"]
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a scenario (a mapping with name, task, strategies)")
    return document


@experiment_app.command("run")
def run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A scenario, JSON or YAML.")],
    mode: Annotated[Mode | None, typer.Option("--mode", help="simulate or execute.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Simulation seed.")] = None,
    repetitions: Annotated[
        int | None, typer.Option("--repetitions", min=1, help="Runs per variant.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run an experiment and print its report: each variant's makespan with its 95 % interval,
    the speed-up and p-value against the first, and the winner (only when significant)."""
    st = state(ctx)
    try:
        scenario = read_scenario(file)
    except ValueError as exc:
        st.err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    overrides = {"mode": mode, "seed": seed, "repetitions": repetitions}
    scenario |= {
        k: str(v) if isinstance(v, Mode) else v for k, v in overrides.items() if v is not None
    }
    with st.connect() as client:
        report = client.call_tool("run_experiment", {"scenario": scenario})
        if report.get("status") == "running":
            try:
                report = follow(st, client, report, show_bar=not as_json)
            except KeyboardInterrupt:
                experiment_id = report.get("experimentId")
                st.err.print(
                    f"Stopped watching; experiment {experiment_id} keeps running. "
                    f"Cancel it with: reynolds experiment cancel {experiment_id}"
                )
                raise typer.Exit(130) from None
    show(st, report, as_json=as_json)
    if report.get("status") != "completed":
        raise typer.Exit(1)


def follow(
    st: CliState, client: ReynoldsClient, report: dict[str, Any], *, show_bar: bool
) -> dict[str, Any]:
    """Poll a running experiment until it ends, with a progress bar of its runs."""
    experiment_id = str(report["experimentId"])
    total = int((report.get("progress") or {}).get("total") or 1)
    with Progress(disable=not show_bar, console=st.err, transient=True) as bar:
        runs = bar.add_task(f"experiment {experiment_id}: runs", total=total)
        while report.get("status") == "running":
            bar.update(runs, completed=int((report.get("progress") or {}).get("done") or 0))
            time.sleep(POLL_S)
            report = client.experiment(experiment_id)
    return report


@experiment_app.command("calibrate")
def calibrate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A scenario, JSON or YAML.")],
    repetitions: Annotated[
        int, typer.Option("--repetitions", min=1, help="Real runs per variant.")
    ] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How far to trust the simulator: simulate the scenario (a prediction, from what history
    knows now), then run it for real, and print each variant's predicted and measured
    makespan and the prediction's error."""
    st = state(ctx)
    try:
        scenario = read_scenario(file)
    except ValueError as exc:
        st.err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    with st.connect() as client:
        predicted = client.call_tool(
            "run_experiment", {"scenario": {**scenario, "mode": "simulate"}}
        )
        real = {**scenario, "mode": "execute", "repetitions": repetitions}
        measured = client.call_tool("run_experiment", {"scenario": real})
        measured = follow(st, client, measured, show_bar=not as_json)
    if measured.get("status") != "completed":
        show(st, measured, as_json=as_json)
        raise typer.Exit(1)
    rows = calibration(predicted, measured)
    if as_json:
        print_json({"predicted": predicted, "measured": measured, "calibration": rows})
        return
    st.out.print("| variant | predicted (s) | measured (s) | error |")
    st.out.print("|---|---|---|---|")
    for row in rows:
        st.out.print(
            f"| {escape(row['variant'])} | {row['predictedSeconds']:.3f} | "
            f"{row['measuredSeconds']:.3f} | {row['error']:+.1%} |"
        )
    worst = max(abs(row["error"]) for row in rows)
    sources = (predicted.get("report") or {}).get("durations") or {}
    st.out.print(
        f"worst prediction error {worst:.1%}; predicted from {render.cell(sources)} "
        "(subtask times by source)"
    )


def calibration(predicted: dict[str, Any], measured: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant: the simulated and the measured mean makespan, and the relative error."""
    real = {v["name"]: v["makespanSeconds"]["mean"] for v in measured.get("variants") or []}
    rows = []
    for variant in predicted.get("variants") or []:
        name, guess = variant["name"], variant["makespanSeconds"]["mean"]
        if name in real and real[name] > 0:
            error = (guess - real[name]) / real[name]
            rows.append(
                {
                    "variant": name,
                    "predictedSeconds": guess,
                    "measuredSeconds": real[name],
                    "error": error,
                }
            )
    return rows


@experiment_app.command("cancel")
def cancel(
    ctx: typer.Context,
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
) -> None:
    """Stop an experiment running for real (execute mode), and the task it is running."""
    st = state(ctx)
    with st.connect() as client:
        report = client.cancel_experiment(experiment_id)
    st.out.print(
        f"Experiment {render.cell(experiment_id)}: {render.styled(report.get('status'))} "
        f"after {render.cell((report.get('progress') or {}).get('done'))} run(s)"
    )


@experiment_app.command("list")
def list_experiments(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The experiments run, newest first."""
    st = state(ctx)
    with st.connect() as client:
        body = client.resource("experiments")
    found = body.get("experiments", []) if isinstance(body, dict) else []
    if as_json:
        print_json({"experiments": found})
        return
    if not found:
        st.out.print("No experiments yet: reynolds experiment run FILE")
        return
    for e in found:
        st.out.print(
            f"{render.cell(e.get('experimentId'))}  {render.cell(e.get('name'))}  "
            f"{render.cell(e.get('mode'))}  {render.styled(e.get('status'))}  "
            f"winner {render.cell(e.get('winner'))}  {render.cell(e.get('createdAt'))}"
        )


@experiment_app.command("show")
def show_experiment(
    ctx: typer.Context,
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """An experiment's report."""
    st = state(ctx)
    with st.connect() as client:
        report = client.experiment(experiment_id)
    show(st, report, as_json=as_json)


def show(st: CliState, report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    details = report.get("report") or {}
    st.out.print(
        f"Experiment {render.cell(report.get('experimentId'))} "
        f"({render.cell(report.get('name'))}): {render.styled(report.get('status'))}"
    )
    if details.get("markdown"):
        st.out.print(escape(str(details["markdown"])), soft_wrap=True)
    st.out.print(escape(str(details.get("conclusion") or "")))
    st.out.print(
        f"winner: {render.cell(report.get('winner'))}; {render.cell(details.get('mode'))} "
        f"mode, {render.cell(details.get('repetitions'))} runs per variant, "
        f"α = {render.cell(details.get('alpha'))}, seed {render.cell(details.get('seed'))}"
    )
