"""What `/health` and `/status` report: the checks a load balancer reads, and the server's state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from reynolds.errors import ReynoldsError
from reynolds.services.engine import Engine


class ProbedStore(Protocol):
    """What the checks need of the store."""

    async def flush(self) -> None: ...

    def probe(self) -> None:
        """Raise unless the database answers a read made afresh."""

    def task_counts(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Health:
    """The body of `GET /health`, and its status code (503 when a check fails)."""

    body: dict[str, Any]

    @property
    def status_code(self) -> int:
        return 503 if self.body.get("failing") else 200


async def check_health(
    engine: Engine, store: ProbedStore, *, store_url: str, version: str
) -> Health:
    """The store answers, and the pools have replicas (or, on Celery, the broker answers).
    `store_url` is shown as given: pass it without its password."""
    checks: dict[str, Any] = {"store": await _store_check(store, store_url)}
    pools = engine.pool_status()
    replicas = {p["type"]: p["replicas"] for p in pools}
    if engine.distributed is None:
        checks["pools"] = {
            "status": "ok" if all(replicas.values()) else "failing",
            "replicas": replicas,
        }
    else:
        # Workers come and go on their own; the server is healthy while it reaches the
        # broker. A pool no worker serves is reported, and its subtasks wait.
        error = engine.distributed.describe()["brokerError"]
        checks["broker"] = {"status": "failing", "error": error} if error else {"status": "ok"}
        checks["pools"] = {
            "status": "ok",
            "replicas": replicas,
            "withoutWorkers": [k for k, n in replicas.items() if not n],
        }
    failing = [k for k, v in checks.items() if v["status"] != "ok"]
    body: dict[str, Any] = {
        "status": "unhealthy" if failing else "healthy",
        "checks": checks,
        "version": version,
    }
    if failing:
        body["failing"] = failing
        # As every error answer, an `error` line: each failing check and why.
        body["error"] = "; ".join(f"{k}: {checks[k].get('error', 'failing')}" for k in failing)
    return Health(body)


async def _store_check(store: ProbedStore, store_url: str) -> dict[str, Any]:
    check: dict[str, Any] = {"status": "ok", "url": store_url}
    try:
        # The writer commits, and the store reads afresh (see SqlStore.probe).
        await store.flush()
        await asyncio.to_thread(store.probe)
    except Exception as exc:
        error = exc.message if isinstance(exc, ReynoldsError) else str(exc)
        check.update(status="failing", error=error)
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
