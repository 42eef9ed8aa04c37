"""The health checks beyond the store, each made to fail: a pool without replicas or with its
breaker open, a full disk, memory all but gone, a subtask running past its timeout, a high
error rate, an MCP server that cannot be started or reached, a cache that does not answer.
The scheduler runs on the fakes; the probes are scripted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.scheduler import scheduler, until

from reynolds.adapters.cache.memory import MemoryCache
from reynolds.adapters.cache.redis import RedisCache
from reynolds.adapters.probes import MachineProbes
from reynolds.adapters.redis_link import RedisLink
from reynolds.core.models import Status
from reynolds.core.pools import PoolSet
from reynolds.services import health_checks as hc
from reynolds.services.health import check_health

pytestmark = pytest.mark.anyio

GIB = 1 << 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Probes:
    """Scripted answers of the machine and the network."""

    def __init__(
        self,
        disk: tuple[int, int] | None = (50 * GIB, 100 * GIB),
        memory: tuple[int, int] | None = (8 * GIB, 16 * GIB),
        commands: frozenset[str] = frozenset(),
        refused: dict[str, str] | None = None,
    ) -> None:
        self._disk, self._memory, self.commands = disk, memory, commands
        self.refused = refused or {}

    def disk(self, path: Path) -> tuple[int, int] | None:
        return self._disk

    def memory(self) -> tuple[int, int] | None:
        return self._memory

    def executable(self, command: str) -> bool:
        return command in self.commands

    async def connects(self, url: str) -> str | None:
        return self.refused.get(url)


class Store:
    """A store that answers, or fails its write."""

    def __init__(self, write_error: Exception | None = None) -> None:
        self.write_error = write_error

    async def flush(self) -> None:
        return None

    def probe(self) -> None:
        return None

    def probe_write(self) -> None:
        if self.write_error is not None:
            raise self.write_error

    def task_counts(self) -> dict[str, int]:
        return {}


async def health(engine: Any, probes: Probes | None = None, **kwargs: Any) -> dict[str, Any]:
    report = await check_health(
        engine, kwargs.pop("store", Store()), store_url="sqlite://x", version="t",
        probes=probes or Probes(), **kwargs,
    )  # fmt: skip
    body = dict(report.body)
    body["code"] = report.status_code
    return body


async def test_a_healthy_server_passes_every_check() -> None:
    async with scheduler() as s:
        body = await health(s.engine, cache=(MemoryCache(), "memory"))
    assert body["code"] == 200 and body["status"] == "healthy"
    assert "warnings" not in body and "failing" not in body
    assert set(body["checks"]) >= {"store", "pools", "cache", "disk", "memory", "errorRate"}
    assert body["checks"]["pools"]["work"]["status"] == "ok"


async def test_a_store_that_takes_no_write_fails_naming_why() -> None:
    async with scheduler() as s:
        body = await health(s.engine, store=Store(OSError("disk I/O error")))
    assert body["code"] == 503 and body["failing"] == ["store"]
    assert "disk I/O error" in body["error"]
    assert "REYNOLDS_DATABASE_URL" in body["checks"]["store"]["recommendation"]


async def test_a_pool_with_no_replicas_fails_and_an_open_breaker_warns() -> None:
    none = {"name": "work", "replicas": {"min": 0, "max": 2, "initial": 0}}
    async with scheduler(pool_set=PoolSet.from_mapping({"pools": {"work": none}})) as s:
        empty = await health(s.engine)
    assert empty["code"] == 503 and empty["failing"] == ["pools.work"]
    assert "./scale-agents.sh scale work 1" in empty["checks"]["pools"]["work"]["recommendation"]
    pool_set = PoolSet.from_mapping(
        {"pools": {"a": {"name": "a", "replicas": {"min": 1, "max": 2, "initial": 1}}}},
        source="test",
    )
    async with scheduler(pool_set=pool_set, breaker_failures=1) as s:
        s.shell.outcomes = {"x": [hc_refused()]}
        run = await s.submit(
            {"type": "t", "subtasks": [{"id": "x", "action": {"kind": "shell", "argv": ["w"]}}]}
        )
        assert await s.engine.wait(run, 5)
        opened = await health(s.engine)
    assert opened["code"] == 200 and opened["warnings"] == ["pools.a"]
    assert opened["checks"]["pools"]["a"]["breaker"] == "open"


def hc_refused() -> Any:
    from reynolds.services.ports import ActionResult

    return ActionResult(False, exit_code=7, error="curl: (7) Failed to connect: Connection refused")


async def test_a_nearly_full_disk_warns_then_fails() -> None:
    async with scheduler() as s:
        low = await health(s.engine, Probes(disk=(500 * (1 << 20), 100 * GIB)))
        full = await health(s.engine, Probes(disk=(50 * (1 << 20), 100 * GIB)))
    assert low["code"] == 200 and low["warnings"] == ["disk"]
    assert full["code"] == 503 and full["failing"] == ["disk"]
    assert "worktrees prune" in full["checks"]["disk"]["recommendation"]


async def test_memory_all_but_gone_warns_then_fails() -> None:
    async with scheduler() as s:
        low = await health(s.engine, Probes(memory=(1 * GIB, 16 * GIB)))
        gone = await health(s.engine, Probes(memory=(100 * (1 << 20), 16 * GIB)))
    assert low["warnings"] == ["memory"]
    assert gone["code"] == 503 and gone["failing"] == ["memory"]


async def test_a_subtask_running_long_past_its_timeout_is_stuck() -> None:
    async with scheduler() as s:
        s.shell.gates["hang"] = asyncio.Event()  # a runner that never ends it
        hang = {"id": "hang", "timeoutSeconds": 10, "action": {"kind": "shell", "argv": ["w"]}}
        run = await s.submit({"type": "t", "subtasks": [hang]})
        assert await until(lambda: run.subs["hang"].status is Status.RUNNING)
        s.clock.advance(10 + hc.LIMITS.stuck_grace_s - 1)
        patient = await health(s.engine)
        s.clock.advance(2)
        stuck = await health(s.engine)
        s.shell.gates["hang"].set()
    assert patient["checks"]["stuckSubtasks"]["status"] == "ok"
    assert stuck["warnings"] == ["stuckSubtasks"]
    (entry,) = stuck["checks"]["stuckSubtasks"]["stuck"]
    assert (entry["taskId"], entry["subtaskId"]) == (run.id, "hang")
    assert f"reynolds tasks cancel {run.id}" in stuck["checks"]["stuckSubtasks"]["recommendation"]
    advice = stuck["checks"]["stuckSubtasks"]["recommendation"]
    assert f"reynolds logs work-agent --task {run.id}" in advice


async def test_the_error_rate_of_the_last_hour_warns_past_one_in_ten() -> None:
    async with scheduler() as s:
        outcomes = s.engine.runs.outcomes
        now = s.clock()
        for i in range(20):
            outcomes.ended(i % 4 != 0, now - 4000)  # over an hour ago: forgotten
        for i in range(20):
            outcomes.ended(i % 10 != 0, now - 60)  # 2 of 20: 10 %, not more
        calm = await health(s.engine)
        for _ in range(2):
            outcomes.ended(False, now)
        busy = await health(s.engine)
    assert calm["checks"]["errorRate"]["status"] == "ok"
    assert calm["checks"]["errorRate"]["attempts"] == 20
    assert busy["warnings"] == ["errorRate"]
    assert busy["checks"]["errorRate"]["failed"] == 4


async def test_an_mcp_server_that_cannot_start_or_be_reached_warns() -> None:
    servers = {
        "git": {"command": "mcp-server-git"},
        "gone": {"command": "no-such-server"},
        "tracker": {"url": "http://127.0.0.1:9/mcp"},
    }
    pool_set = PoolSet.from_mapping(
        {"pools": {"code": {"name": "code", "mcpServers": servers}}}, source="test"
    )
    probes = Probes(
        commands=frozenset({"mcp-server-git"}),
        refused={"http://127.0.0.1:9/mcp": "127.0.0.1:9: Connection refused"},
    )
    async with scheduler(pool_set=pool_set) as s:
        body = await health(s.engine, probes)
    assert body["code"] == 200
    assert sorted(body["warnings"]) == ["mcpServers.gone", "mcpServers.tracker"]
    assert body["checks"]["mcpServers"]["git"]["status"] == "ok"
    assert "not found" in body["checks"]["mcpServers"]["gone"]["message"]


async def test_a_redis_that_does_not_answer_is_a_warning() -> None:
    link = RedisLink.from_url("redis://127.0.0.1:9/0", "cache", timeout_s=0.5)
    cache = RedisCache(link)
    try:
        async with scheduler() as s:
            body = await health(s.engine, cache=(cache, "redis://127.0.0.1:9/0"))
    finally:
        await cache.aclose()
    assert body["code"] == 200 and body["warnings"] == ["cache"]
    assert "REYNOLDS_REDIS_URL" in body["checks"]["cache"]["recommendation"]


async def test_the_machine_probes_read_this_machine(tmp_path: Path) -> None:
    probes = MachineProbes()
    free, total = probes.disk(tmp_path / "not" / "made" / "yet") or (0, 0)
    assert 0 < free <= total
    available, memory = probes.memory() or (0, 0)
    assert 0 < available <= memory
    assert probes.executable("sh") and not probes.executable("no-such-command-here")
    assert "127.0.0.1:9" in (await probes.connects("http://127.0.0.1:9/") or "")


class Broker:
    """What the health check reads of a Celery executor: the broker's last error."""

    def __init__(self, error: str | None) -> None:
        self.error = error

    def describe(self) -> dict[str, Any]:
        return {"brokerError": self.error}


async def test_on_celery_an_unreachable_broker_fails_and_a_pool_without_workers_warns() -> None:
    none = {"name": "work", "replicas": {"min": 0, "max": 2, "initial": 0}}
    async with scheduler(pool_set=PoolSet.from_mapping({"pools": {"work": none}})) as s:
        s.engine.distributed = Broker(None)  # type: ignore[assignment]
        waiting = await health(s.engine)
        s.engine.distributed = Broker("Error 111 connecting to 127.0.0.1:6379")  # type: ignore[assignment]
        down = await health(s.engine)
        s.engine.distributed = None
    assert waiting["code"] == 200 and waiting["warnings"] == ["pools.work"]
    assert "reynolds agent --type work" in waiting["checks"]["pools"]["work"]["recommendation"]
    assert down["code"] == 503 and down["failing"] == ["broker"]
    assert (
        "6379" in down["error"]
        and "REYNOLDS_REDIS_URL" in down["checks"]["broker"]["recommendation"]
    )
