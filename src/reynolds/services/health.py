"""What `/health` and `/status` report: the checks a load balancer reads, and the server's state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from reynolds.errors import ReynoldsError
from reynolds.services import health_checks as hc
from reynolds.services.engine import Engine
from reynolds.services.ports import Cache, HealthProbes


class ProbedStore(Protocol):
    """What the checks need of the store."""

    async def flush(self) -> None: ...

    def probe(self) -> None:
        """Raise unless the database answers a read made afresh."""

    def probe_write(self) -> None:
        """Raise unless the database takes a write (the server's heartbeat) now."""

    def task_counts(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Health:
    """The body of `GET /health`, and its status code (503 when a check fails)."""

    body: dict[str, Any]

    @property
    def status_code(self) -> int:
        return 503 if self.body.get("failing") else 200


async def check_health(
    engine: Engine,
    store: ProbedStore,
    *,
    store_url: str,
    version: str,
    probes: HealthProbes | None = None,
    cache: tuple[Cache, str] | None = None,
) -> Health:
    """Every check (services/health_checks.py): the store (a write and a read), the broker on
    Celery, each pool and its breaker, and with `probes` the disk, memory, stuck subtasks, the
    last hour's error rate and the declared MCP servers; with `cache` (Redis, and its URL
    without password) that it answers. `store_url` is shown as given: pass it without its
    password. Only a `failing` check makes the answer 503; warnings are listed."""
    now = engine.clock()
    checks: dict[str, Any] = {"store": await _store_check(store, store_url)}
    if engine.distributed is not None:
        # Workers come and go on their own; the server is healthy while it reaches the
        # broker. A pool no worker serves is a warning, and its subtasks wait.
        error = engine.distributed.describe()["brokerError"]
        checks["broker"] = (
            hc.check("failing", error, "Check REYNOLDS_REDIS_URL: the Celery broker")
            if error
            else hc.check("ok", "the broker answers")
        )
    checks["pools"] = hc.pool_checks(engine)
    if cache is not None:
        checks["cache"] = await hc.cache_check(*cache)
    if probes is not None:
        checks["disk"] = hc.disk_check(probes, engine)
        checks["memory"] = hc.memory_check(probes)
        mcp = await hc.mcp_checks(engine, probes)
        if mcp:
            checks["mcpServers"] = mcp
    checks["stuckSubtasks"] = hc.stuck_check(engine, now)
    checks["errorRate"] = hc.error_rate_check(engine, now)
    leaves = _leaves(checks)
    failing = [name for name, value in leaves if value["status"] == "failing"]
    warnings = [name for name, value in leaves if value["status"] == "warn"]
    body: dict[str, Any] = {
        "status": "unhealthy" if failing else "healthy",
        "checks": checks,
        "version": version,
    }
    if warnings:
        body["warnings"] = warnings
    if failing:
        body["failing"] = failing
        # As every error answer, an `error` line: each failing check and why.
        body["error"] = "; ".join(
            f"{name}: {value.get('error') or value.get('message', 'failing')}"
            for name, value in leaves
            if value["status"] == "failing"
        )
    return Health(body)


def _leaves(checks: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each check with its name; a group (pools, mcpServers) as `group.member`."""
    out = []
    for name, value in checks.items():
        if "status" in value:
            out.append((name, value))
        else:
            out += [(f"{name}.{member}", sub) for member, sub in value.items()]
    return out


async def _store_check(store: ProbedStore, store_url: str) -> dict[str, Any]:
    check: dict[str, Any] = {"status": "ok", "message": "a write and a read", "url": store_url}
    try:
        # The writer commits, the server's heartbeat is written, and the store reads afresh
        # (see SqlStore.probe).
        await store.flush()
        await asyncio.to_thread(store.probe_write)
        await asyncio.to_thread(store.probe)
    except Exception as exc:
        error = exc.message if isinstance(exc, ReynoldsError) else str(exc)
        check.update(
            status="failing",
            error=error,
            message=error,
            recommendation="Check the store: REYNOLDS_DATABASE_URL and the database it names; "
            "the server log says more (./start-orchestration.sh logs)",
        )
    return check


async def server_status(
    engine: Engine,
    store: ProbedStore,
    *,
    version: str,
    backend: str,
    store_url: str,
    started_at: float,
    resumed: list[str],
) -> dict[str, Any]:
    """The body of `GET /status`: pools, task counts, backend, store kind, uptime."""
    await store.flush()
    counts = await asyncio.to_thread(store.task_counts)
    return {
        "service": "reynolds",
        "version": version,
        "pools": engine.pool_status(),
        "tasks": counts,
        "engine": engine.counts(),
        "backend": backend,
        "store": store_url.split(":", 1)[0],
        "uptimeSeconds": round(time.time() - started_at, 3),
        "resumedTasks": resumed,
        **({"celery": engine.distributed.describe()} if engine.distributed is not None else {}),
    }
