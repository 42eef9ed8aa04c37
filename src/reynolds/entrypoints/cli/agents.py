"""`reynolds agents …` and the commands whose features are not built yet."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from typing import Annotated, Any

import typer
from rich.markup import escape

from reynolds.entrypoints import secret_env
from reynolds.entrypoints.cli import render
from reynolds.entrypoints.cli.state import CliState, print_json, state

agents_app = typer.Typer(help="Agent pools: status and scaling.", no_args_is_help=True)


@agents_app.command("status")
def status(
    ctx: typer.Context,
    agent_type: Annotated[
        str, typer.Argument(metavar="[TYPE]", help="all, devops, platform, code.")
    ] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replicas, load and health of the agent pools."""
    st = state(ctx)
    with st.connect() as client:
        result: dict[str, Any] = client.call_tool("get_agent_status", {"agentType": agent_type})
    if as_json:
        print_json(result)
        return
    pools = [p for p in result.get("pools") or [] if isinstance(p, dict)]
    st.out.print(render.pools_table(pools))
    downstreams = [d for d in result.get("downstreams") or [] if isinstance(d, dict)]
    if downstreams:
        st.out.print(render.downstreams_table(downstreams))
    summary = result.get("summary") or {}
    if summary:
        st.out.print(
            f"{render.cell(summary.get('totalAgents'))} agents, "
            f"{render.cell(summary.get('healthyAgents'))} healthy, average utilization "
            f"{render.percent(summary.get('averageUtilization'))}"
        )
    st.comment(result.get("reynoldsComment"))


@agents_app.command("scale")
def scale(
    ctx: typer.Context,
    agent_type: Annotated[str, typer.Argument(metavar="TYPE")],
    replicas: Annotated[int, typer.Argument(metavar="N", min=0)],
) -> None:
    """Set a pool's replicas (accepts aliases such as devops-agent)."""
    st = state(ctx)
    with st.connect() as client:
        result: dict[str, Any] = client.call_tool(
            "scale_agents", {"agentType": agent_type, "replicas": replicas}
        )
    pool = result.get("pool") or {}
    st.out.print(
        f"{escape(str(pool.get('type')))}: {render.cell(pool.get('replicas'))} replicas "
        f"({render.cell(pool.get('busy'))} busy, {render.cell(pool.get('minReplicas'))}.."
        f"{render.cell(pool.get('maxReplicas'))})"
    )


@agents_app.command("auto")
def auto(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would change.")] = False,
) -> None:
    """Scale every pool once, from its load."""
    st = state(ctx)
    with st.connect() as client:
        _print_decisions(st, client.call_tool("autoscale_agents", {"dryRun": dry_run}))


@agents_app.command("watch")
def watch(
    ctx: typer.Context,
    interval_s: Annotated[int, typer.Argument(metavar="SECONDS", min=1)] = 30,
) -> None:
    """Auto-scale every SECONDS until interrupted."""
    st = state(ctx)
    try:
        with st.connect() as client:
            while True:
                st.out.print(f"[dim]{time.strftime('%H:%M:%S')}[/]")
                _print_decisions(st, client.call_tool("autoscale_agents", {"dryRun": False}))
                time.sleep(interval_s)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@agents_app.command("thresholds")
def thresholds(ctx: typer.Context) -> None:
    """The thresholds that drive scaling, per pool."""
    st = state(ctx)
    with st.connect() as client:
        result: dict[str, Any] = client.call_tool("get_agent_status", {"agentType": "all"})
    for pool in result.get("pools") or []:
        t = pool.get("thresholds") or {}
        st.out.print(
            f"{escape(str(pool.get('type')))}: auto {'on' if t.get('auto') else 'off'}, "
            f"replicas {render.cell(t.get('minReplicas'))}..{render.cell(t.get('maxReplicas'))} "
            f"(auto from {render.cell(t.get('autoMinReplicas'))}), "
            f"up at CPU ≥ {render.cell(t.get('cpuUpPercent'))}% or memory ≥ "
            f"{render.cell(t.get('memoryUpPercent'))}% or queue ≥ {render.cell(t.get('queueUp'))}"
            f", down below CPU {render.cell(t.get('cpuDownPercent'))}% and memory "
            f"{render.cell(t.get('memoryDownPercent'))}%, cool-down "
            f"{render.cell(t.get('cooldownSeconds'))} s"
        )


def _print_decisions(st: CliState, result: dict[str, Any]) -> None:
    decisions = result.get("decisions") or []
    if not decisions:
        st.out.print("no change: every pool is where its load wants it")
    verb = "would scale" if result.get("dryRun") else "scaled"
    for d in decisions:
        st.out.print(
            f"{verb} {escape(str(d.get('agentType')))} {render.cell(d.get('from'))} → "
            f"{render.cell(d.get('to'))}: {escape(str(d.get('reason')))}"
        )


def mcp(ctx: typer.Context) -> None:
    """Serve MCP over stdio, for desktop AI assistants (starts the server when needed)."""
    from reynolds.entrypoints.cli.mcp_stdio import mcp as serve_mcp

    serve_mcp(ctx)


def agent(
    ctx: typer.Context,
    agent_type: Annotated[str, typer.Option("--type", help="The pool this worker serves.")],
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Subtasks at once (processes).")
    ] = 1,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port",
            min=0,
            max=65535,
            help="Serve GET /health here (the seed's 8081-8087); 0: none.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Worker name (default: TYPE-<random>@host).")
    ] = None,
) -> None:
    """Run a distributed (Celery) worker for one pool: it takes that pool's queue from the
    broker at REYNOLDS_REDIS_URL and reports to the orchestrator."""
    from reynolds.adapters.executors.celery_app import AGENT_TYPE_ENV
    from reynolds.adapters.private_dirs import tighten
    from reynolds.bootstrap import action_user, load_pools
    from reynolds.errors import InvalidInput

    st = state(ctx)
    settings = st.settings
    try:
        pools = load_pools(settings)
        key = pools.resolve(agent_type)
        tighten(settings.secrets_dir)
        action_user(settings, pools)
    except InvalidInput as exc:
        st.err.print(f"[red]error:[/] {escape(exc.message)}")
        raise typer.Exit(2) from None
    if not settings.redis_url:
        st.err.print(
            "[red]error:[/] REYNOLDS_REDIS_URL is unset; a worker needs the broker "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
        raise typer.Exit(2)
    port = settings.agent_health_port if health_port is None else health_port
    os.environ[AGENT_TYPE_ENV] = key
    os.environ["REYNOLDS_AGENT_HEALTH_PORT"] = str(port)
    name = name or f"{key}-{uuid.uuid4().hex[:8]}@%h"
    # Its log, REYNOLDS_HOME/logs/{this}.log: the name before the host, safe as a file name.
    os.environ["REYNOLDS_WORKER_LOG"] = re.sub(r"[^A-Za-z0-9_.-]", "_", name.split("@")[0])[:100]
    argv = worker_argv(key, concurrency, name)
    # The worker's actions run below it: the token it reports with must not be in its environ.
    secret_env.exec_without_secrets(argv, os.environ)


def worker_argv(pool: str, concurrency: int, name: str) -> list[str]:
    """The Celery worker command for one pool's queue."""
    return [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "reynolds.entrypoints.celery_agent",
        "worker",
        "--queues",
        pool,
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",
        "--prefetch-multiplier",
        "1",
        "--hostname",
        name,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]
