"""The `reynolds` command: the server's lifecycle, and a client of its HTTP API."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from reynolds import __version__
from reynolds.entrypoints import secret_env
from reynolds.entrypoints.cli import agents, backup, health, lifecycle, render
from reynolds.entrypoints.cli import logs as log_command
from reynolds.entrypoints.cli.audit import audit
from reynolds.entrypoints.cli.experiment import experiment_app
from reynolds.entrypoints.cli.orchestrate import orchestrate
from reynolds.entrypoints.cli.patterns import patterns
from reynolds.entrypoints.cli.state import CliState, print_json, state
from reynolds.entrypoints.cli.tasks import tasks_app
from reynolds.entrypoints.cli.worktrees import worktrees_app
from reynolds.errors import ReynoldsError

HEALTH_TIMEOUT_S = 5.0
# The commands that keep running: started with secrets in their environment, they start again
# without them (the same pid), as /proc would show that environment for their whole life.
LONG_LIVED = frozenset({"serve", "mcp"})
_LABEL = {"pass": "[green]PASS[/]", "warn": "[yellow]WARN[/]", "fail": "[red]FAIL[/]"}


app = typer.Typer(
    name="reynolds",
    help="Reynolds: decompose a task into a DAG of subtasks and run them in parallel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ReportFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reynolds {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Reynolds: decompose a task into a DAG of subtasks and run them in parallel."""
    ctx.obj = CliState()


app.command()(lifecycle.serve)
app.command()(lifecycle.start)
app.command()(lifecycle.stop)
app.command()(log_command.logs)
app.command()(orchestrate)
app.add_typer(tasks_app, name="tasks")
app.add_typer(agents.agents_app, name="agents")
app.add_typer(worktrees_app, name="worktrees")
app.add_typer(experiment_app, name="experiment")
app.command()(agents.mcp)
app.command()(agents.agent)
app.command()(audit)
app.command()(patterns)
app.command()(backup.backup)
app.command()(backup.restore)


@app.command()
def status(ctx: typer.Context) -> None:
    """Pools, task counts, backend and store of the running server."""
    st = state(ctx)
    with st.connect() as client:
        answer = client.status()
    render.render_status(st.out, answer)


@app.command("health")
def health_command(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every check's details.")
    ] = False,
    export: Annotated[
        bool, typer.Option("--export", help="Write health-report-*.json or .txt.")
    ] = False,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="json or text.")] = (
        ReportFormat.TEXT
    ),
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            help="Where --export writes its report (default: the current directory).",
        ),
    ] = None,
) -> None:
    """Check the server; exits 0 healthy, 2 warnings, 1 failures."""
    st = state(ctx)
    started, clock = datetime.now(UTC), time.monotonic()
    with st.connect(timeout_s=HEALTH_TIMEOUT_S) as client:
        results = health.run_checks(client)
    report = health.build_report(results, timestamp=started, duration_s=time.monotonic() - clock)
    if fmt is ReportFormat.JSON and not export:
        print_json(report)
    else:
        _show_health(st, report, verbose=verbose)
    if export:
        path = _write_report(report, fmt, output_dir or Path.cwd())
        st.out.print(f"Report written to {path}")
    raise typer.Exit(health.exit_code(results))


def _show_health(st: CliState, report: dict[str, Any], *, verbose: bool) -> None:
    body = report["health_check"]
    for result in body["results"]:
        st.out.print(f"{_LABEL[result['status']]} {result['check']}: {escape(result['message'])}")
        if verbose:
            for key, value in result["details"].items():
                st.out.print(f"       {key}: {escape(json.dumps(value, default=str))}")
    summary = body["summary"]
    st.out.print(
        f"{summary['overall_status']}: {summary['passed']} passed, {summary['warnings']} "
        f"warnings, {summary['failed']} failed ({body['duration_seconds']} s)"
    )
    for advice in body["recommendations"]:
        st.out.print(f"  - {escape(advice)}")


def _write_report(report: dict[str, Any], fmt: ReportFormat, directory: Path) -> Path:
    text = (
        json.dumps(report, indent=2) + "\n"
        if fmt is ReportFormat.JSON
        else health.render_text(report)
    )
    path = health.report_path(directory, datetime.now(), fmt.value)
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    """The `reynolds` console script. An error no command turned into its own message still
    ends as one line and exit code 1, never a traceback."""
    if sys.argv[1:2] and sys.argv[1] in LONG_LIVED:
        secret_env.restart_without_secrets()
    try:
        app(prog_name="reynolds")
    except ReynoldsError as exc:
        _fail(exc.message)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False).print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(1)
