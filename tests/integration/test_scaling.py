"""Scaling on the engine: manual changes within limits, and the auto-scaler under a burst."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers.polling import wait_for_async

from reynolds.bootstrap import Container, build
from reynolds.core.models import Strategy, TaskSpec
from reynolds.errors import InvalidInput
from reynolds.services.tools import CallContext, call_tool
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    """devops: 1..3 replicas, starting at 1, scaled by its queue alone (CPU and memory
    thresholds at 100 %), no cool-down; code idle-quiet at its initial 3; platform manual."""
    config = yaml.safe_load(Settings().agents_file.read_text())
    pools = config["pools"]
    pools["devops"]["replicas"] = {"min": 1, "max": 3, "initial": 1}
    pools["devops"]["scaling"] = {
        "queueUp": 2,
        "cpuUpPercent": 100,
        "memoryUpPercent": 100,
        "cpuDownPercent": 100,
        "memoryDownPercent": 100,
        "cooldownSeconds": 0,
    }
    # code: always "quiet", so only its floor (initial 3) keeps it from shrinking.
    pools["code"]["scaling"] = {"cpuDownPercent": 100, "memoryDownPercent": 100}
    pools["platform"]["scaling"] = {"auto": False}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "agents.yaml").write_text(yaml.safe_dump(config))
    settings = Settings(
        home=tmp_path / "home", config_dir=tmp_path / "config", scale_interval_s=0.05
    )
    container = await build(settings)
    # Queue depth decides here; the machine's CPU over a sampling window of a few jiffies can
    # read 100 % on a busy machine and hold a scale-down back.
    container.engine.autoscaler.sample = lambda: (0.0, 0.0)
    try:
        yield container
    finally:
        await container.aclose()


def replicas(app: Container, pool: str) -> int:
    return app.engine.replicas[pool]


async def status(app: Container) -> dict[str, Any]:
    return await call_tool(app.engine, "get_agent_status", {}, CallContext())


async def test_a_burst_on_one_pool_scales_it_up_to_its_max_and_back_down_when_idle(
    app: Container, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    wait_for_gate = (
        "import os, time\n"
        "end = time.monotonic() + 30\n"
        f"while not os.path.exists({str(gate)!r}) and time.monotonic() < end:\n"
        "    time.sleep(0.02)\n"
    )
    action = {"kind": "shell", "argv": [PY, "-c", wait_for_gate]}
    spec = TaskSpec.model_validate(
        {
            "type": "burst",
            "subtasks": [{"id": f"s{i}", "agent": "devops", "action": action} for i in range(6)],
        }
    )
    run = await app.engine.submit(spec, Strategy(max_concurrency=6))

    await wait_for_async(lambda: replicas(app, "devops") == 3, 20)
    await wait_for_async(
        lambda: app.engine.free["devops"] == 0, 20
    )  # the new replicas took queued work
    seen = {p["type"]: p for p in (await status(app))["pools"]}
    assert seen["devops"]["replicas"] == 3 and seen["devops"]["busy"] == 3
    assert seen["devops"]["queueDepth"] == 3

    gate.touch()
    assert await app.engine.wait(run, 30)
    await wait_for_async(lambda: replicas(app, "devops") == 1, 20)

    after = await status(app)
    devops = next(p for p in after["pools"] if p["type"] == "devops")
    assert devops["replicas"] == 1
    moves = [(e["from"], e["to"], e["source"]) for e in reversed(after["recentScaling"])]
    assert moves == [(1, 2, "auto"), (2, 3, "auto"), (3, 2, "auto"), (2, 1, "auto")]
    stored = app.store.scaling_events(10)
    assert [(r["from_replicas"], r["to_replicas"]) for r in reversed(stored)] == [
        (1, 2),
        (2, 3),
        (3, 2),
        (2, 1),
    ]
    assert all(r["pool"] == "devops" and "queue" in r["reason"] for r in stored)
    kinds = [e["kind"] for e in app.store.events("")]
    assert kinds.count("agent_scaled") == 4
    # platform is not auto-scaled; code is, but never below its initial replicas.
    assert replicas(app, "platform") == 2 and replicas(app, "code") == 3


async def test_a_manual_scale_above_the_max_is_refused_naming_the_limit(app: Container) -> None:
    with pytest.raises(InvalidInput, match="at most 3"):
        app.engine.scale("devops", 4, "test", "manual")
    with pytest.raises(InvalidInput, match="at least 1"):
        app.engine.scale("devops-agent", 0, "test", "manual")
    with pytest.raises(InvalidInput, match="unknown agent"):
        app.engine.scale("nobody", 1, "test", "manual")
    assert replicas(app, "devops") == 1


async def test_scale_agents_accepts_aliases_and_returns_the_new_pool_status(
    app: Container,
) -> None:
    result = await call_tool(
        app.engine, "scale_agents", {"agentType": "platform-agent", "replicas": 3}, CallContext()
    )
    assert result["pool"]["type"] == "platform" and result["pool"]["replicas"] == 3
    assert app.engine.free["platform"] == 3
    await app.store.flush()
    row = app.store.scaling_events(1)[0]
    assert (row["pool"], row["from_replicas"], row["to_replicas"], row["source"]) == (
        "platform",
        2,
        3,
        "manual",
    )
    metrics = app.metrics.render().decode()
    assert 'reynolds_scaling_events_total{agent_type="platform",direction="up"} 1.0' in metrics
    assert 'reynolds_agent_replicas{agent_type="platform"} 3.0' in metrics


async def test_a_dry_run_autoscale_reports_without_changing_anything(app: Container) -> None:
    await app.engine.autoscaler.stop()  # only this evaluation, none from the loop
    app.engine.scale("devops", 3, "test", "manual")
    result = await call_tool(app.engine, "autoscale_agents", {"dryRun": True}, CallContext())
    assert [(d["agentType"], d["from"], d["to"], d["applied"]) for d in result["decisions"]] == [
        ("devops", 3, 2, False)
    ]
    assert replicas(app, "devops") == 3
    applied = await call_tool(app.engine, "autoscale_agents", {}, CallContext())
    assert [d["to"] for d in applied["decisions"]] == [2] and replicas(app, "devops") == 2


async def test_manual_scaling_below_the_initial_replicas_is_left_alone_by_auto(
    app: Container,
) -> None:
    await app.engine.autoscaler.stop()
    app.engine.scale("code", 1, "test", "manual")
    applied = await call_tool(app.engine, "autoscale_agents", {}, CallContext())
    assert applied["decisions"] == []  # auto does not undo the manual choice
    assert replicas(app, "code") == 1


async def test_thresholds_come_from_the_pool_else_from_settings(app: Container) -> None:
    view = {t["type"]: t for t in app.engine.autoscaler.thresholds_view()}
    assert view["devops"]["queueUp"] == 2 and view["devops"]["cooldownSeconds"] == 0
    assert view["code"]["queueUp"] == app.settings.queue_threshold_scale_up
    assert view["code"]["cpuUpPercent"] == app.settings.cpu_threshold_scale_up
    assert view["platform"]["auto"] is False
    assert view["code"]["autoMinReplicas"] == 3 and view["code"]["minReplicas"] == 1
