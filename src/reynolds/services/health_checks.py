"""The checks of `GET /health` beyond the store: each pool and its breaker, the cache, the disk
holding REYNOLDS_HOME, memory, subtasks running past their timeout, the error rate of the last
hour, and the MCP servers pools declare.

Each check is `{status: ok | warn | failing, message, recommendation?, ...details}`. Only a
failing check makes `/health` answer 503 (a load balancer then stops sending work): a pool with
no replicas, a full disk, memory all but gone. What needs a person but leaves the server able
to work — a breaker open, a high error rate, a stuck subtask, an MCP server not answering — is
a warning.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reynolds.core.mcp_servers import McpHttpServer, McpServer
from reynolds.core.models import Status
from reynolds.services.ports import Cache, HealthProbes

if TYPE_CHECKING:
    from reynolds.services.engine import Engine

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Where a check turns to a warning or a failure."""

    disk_warn_share: float = 0.10  # free below 10 % of the disk: warn
    disk_warn_bytes: int = 1024 * MIB  # or below 1 GiB
    disk_fail_bytes: int = 100 * MIB  # below 100 MiB: the store soon cannot write
    memory_warn_share: float = 0.10  # available below 10 %: warn
    memory_fail_share: float = 0.03  # below 3 %: failing
    error_warn: float = 0.10  # more than 10 % of the last hour's attempts failed
    error_min_attempts: int = 10  # fewer attempts say nothing yet
    stuck_grace_s: float = 60.0  # running this long past its timeout: stuck


LIMITS = Limits()


def check(
    status: str, message: str, recommendation: str | None = None, **details: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "message": message, **details}
    if recommendation is not None and status != "ok":
        out["recommendation"] = recommendation
    return out


def pool_checks(engine: Engine) -> dict[str, Any]:
    """Per pool: replicas (or, on Celery, workers) and its breaker."""
    out: dict[str, Any] = {}
    celery = engine.distributed is not None
    for pool in engine.pool_status():
        name, replicas, circuit = pool["type"], pool["replicas"], pool.get("circuit", "closed")
        details: dict[str, Any] = {"replicas": replicas, "busy": pool["busy"], "breaker": circuit}
        if not replicas:
            if celery:
                out[name] = check(
                    "warn", "no worker serves this pool: its subtasks wait",
                    f"Start a worker: reynolds agent --type {name}", **details,
                )  # fmt: skip
            else:
                out[name] = check(
                    "failing", "no replicas: its subtasks cannot run",
                    f"Scale it up: ./scale-agents.sh scale {name} 1", **details,
                )  # fmt: skip
        elif circuit != "closed":
            out[name] = check(
                "warn", f"circuit breaker {circuit}: it takes no work but its probe",
                f"Read why: reynolds agents status; reynolds://loop-prevention ({name})",
                **details,
            )  # fmt: skip
        else:
            out[name] = check("ok", f"{replicas} replicas, {pool['busy']} busy", **details)
    return out


async def cache_check(cache: Cache, shown: str) -> dict[str, Any]:
    error = await cache.ping()
    if error is None:
        return check("ok", f"{shown} answers", url=shown)
    return check(
        "warn", error, "Check REYNOLDS_REDIS_URL and the Redis server it names; until it is "
        "back, analyses are computed and MCP events kept in process", url=shown,
    )  # fmt: skip


def disk_check(probes: HealthProbes, engine: Engine, limits: Limits = LIMITS) -> dict[str, Any]:
    home = engine.settings.home
    usage = probes.disk(home)
    if usage is None:
        return check("warn", f"cannot read the disk space of {home}", "Check that it exists")
    free, total = usage
    details: dict[str, Any] = {"path": str(home), "freeBytes": free, "totalBytes": total}
    share = free / total if total else 0.0
    message = f"{free / MIB:,.0f} MiB free ({share:.0%}) at {home}"
    advice = f"Free space on the disk of {home}: old logs, backups, `reynolds worktrees prune`"
    if free < limits.disk_fail_bytes:
        return check("failing", message, advice, **details)
    if free < limits.disk_warn_bytes or share < limits.disk_warn_share:
        return check("warn", message, advice, **details)
    return check("ok", message, **details)


def memory_check(probes: HealthProbes, limits: Limits = LIMITS) -> dict[str, Any]:
    found = probes.memory()
    if found is None:
        return check("ok", "memory cannot be read here (no /proc/meminfo)")
    available, total = found
    share = available / total
    details: dict[str, Any] = {"availableBytes": available, "totalBytes": total}
    message = f"{available / MIB:,.0f} MiB available ({share:.0%})"
    advice = "Lower maxConcurrency or the pools' replicas, or give the machine more memory"
    if share < limits.memory_fail_share:
        return check("failing", message, advice, **details)
    if share < limits.memory_warn_share:
        return check("warn", message, advice, **details)
    return check("ok", message, **details)


def stuck_check(engine: Engine, now: float, limits: Limits = LIMITS) -> dict[str, Any]:
    """Subtasks still running `stuck_grace_s` past their timeout (the runner should have ended
    them): a runner or a worker that no longer answers."""
    stuck: list[dict[str, Any]] = []
    for run in engine.runs.active:
        for sub in run.subs.values():
            if sub.status is not Status.RUNNING or sub.started_at is None:
                continue
            limit = engine.dispatch.attempts.timeout_s(run, sub)
            over = now - sub.started_at - limit
            if over > limits.stuck_grace_s:
                stuck.append(
                    {"taskId": run.id, "subtaskId": sub.node.id, "agentType": sub.agent_type,
                     "overSeconds": over}
                )  # fmt: skip
    if not stuck:
        return check("ok", "no subtask runs past its timeout", stuck=[])
    stuck.sort(key=lambda s: -s["overSeconds"])
    for entry in stuck:
        entry["overSeconds"] = round(entry["overSeconds"], 1)
    first = stuck[0]
    return check(
        "warn",
        f"{len(stuck)} subtask(s) running past their timeout, e.g. {first['taskId']}/"
        f"{first['subtaskId']} by {first['overSeconds']:g} s",
        f"Cancel the task (reynolds tasks cancel {first['taskId']}) and read its pool's log "
        f"(reynolds logs {first['agentType']}-agent --task {first['taskId']})",
        stuck=stuck[:20],
    )


def error_rate_check(engine: Engine, now: float, limits: Limits = LIMITS) -> dict[str, Any]:
    attempts, failed = engine.runs.outcomes.counts(now)
    rate = failed / attempts if attempts else 0.0
    details: dict[str, Any] = {"attempts": attempts, "failed": failed, "errorRate": round(rate, 4)}
    message = f"{failed} of {attempts} attempts failed in the last hour ({rate:.0%})"
    if attempts >= limits.error_min_attempts and rate > limits.error_warn:
        return check(
            "warn", message, "See what keeps failing: reynolds patterns; reynolds tasks list "
            "--status failed", **details,
        )  # fmt: skip
    return check("ok", message, **details)


async def mcp_checks(engine: Engine, probes: HealthProbes) -> dict[str, Any]:
    """Each MCP server a pool declares: its command can be found, or its URL answers (all
    asked at once, each within the probe's short timeout); and its breaker is closed."""
    servers: dict[str, McpServer] = {}
    for pool in engine.control.pools.pools.values():
        for name, server in pool.mcp_servers.items():
            servers.setdefault(name, server)
    names = list(servers)
    errors = await asyncio.gather(*(_reach(probes, servers[name]) for name in names))
    guards = engine.dispatch.guards
    out: dict[str, Any] = {}
    for name, error in zip(names, errors, strict=True):
        server = servers[name]
        where = (
            {"url": server.url}
            if isinstance(server, McpHttpServer)
            else {"command": server.command}
        )
        breaker = guards.downstreams.get(f"mcp:{name}")
        state = str(breaker.state) if breaker is not None else "closed"
        if error is not None:
            out[name] = check(
                "warn", error, f"mcp actions on {name} fail until it is fixed: check "
                "mcpServers in agents.yaml", breaker=state, **where,
            )  # fmt: skip
        elif state != "closed":
            out[name] = check(
                "warn", f"circuit breaker {state}",
                "Read why: reynolds://loop-prevention", breaker=state, **where,
            )  # fmt: skip
        else:
            out[name] = check("ok", "reachable", breaker=state, **where)
    return out


async def _reach(probes: HealthProbes, server: McpServer) -> str | None:
    if isinstance(server, McpHttpServer):
        return await probes.connects(server.url)
    return None if probes.executable(server.command) else f"command {server.command!r} not found"
