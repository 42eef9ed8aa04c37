"""The one tool registry behind REST (`/mcp/tools/...`) and MCP alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reynolds.core.models import (
    AgentStatusRequest,
    AnalyzeRequest,
    ListTasksRequest,
    OrchestrateRequest,
    TaskIdRequest,
    WireModel,
)
from reynolds.errors import InvalidInput, NotAvailableYet
from reynolds.services.analysis import analyze
from reynolds.services.engine import Engine


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling: the token's name when tokens are configured."""

    token_name: str | None = None


Handler = Callable[[Engine, Any, CallContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    model: type[BaseModel]
    handler: Handler

    def input_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema(by_alias=True)


async def _orchestrate(engine: Engine, req: OrchestrateRequest, ctx: CallContext) -> dict[str, Any]:
    run = await engine.submit(req.task, req.strategy, ctx.token_name)
    if req.wait:
        await engine.wait(run, req.timeout_seconds)
    return await engine.result(run.id)


async def _analyze(engine: Engine, req: AnalyzeRequest, ctx: CallContext) -> dict[str, Any]:
    return await analyze(engine, req.task, req.strategy)


async def _status(engine: Engine, req: TaskIdRequest, ctx: CallContext) -> dict[str, Any]:
    return await engine.result(req.task_id)


async def _cancel(engine: Engine, req: TaskIdRequest, ctx: CallContext) -> dict[str, Any]:
    return await engine.cancel(req.task_id)


async def _list(engine: Engine, req: ListTasksRequest, ctx: CallContext) -> dict[str, Any]:
    status = str(req.status) if req.status is not None else None
    return {"tasks": await engine.list_tasks(status, req.limit)}


async def _agents(engine: Engine, req: AgentStatusRequest, ctx: CallContext) -> dict[str, Any]:
    pools = engine.pool_status()
    if req.agent_type != "all":
        key = engine.pools.resolve(req.agent_type)
        pools = [p for p in pools if p["type"] == key]
    total = sum(p["replicas"] for p in pools)
    busy = sum(p["busy"] for p in pools)
    avg = sum(p["utilization"] for p in pools) / len(pools) if pools else 0.0
    on = engine.settings.personality == "on"
    comment = (
        f"{total} agents standing by, {busy} busy. Everyone's hydrated and ready."
        if on
        else f"{total} replicas, {busy} busy."
    )
    return {
        "pools": pools,
        "summary": {
            "totalAgents": total,
            "healthyAgents": total,
            "busyAgents": busy,
            "averageUtilization": round(avg, 3),
        },
        "reynoldsComment": comment,
    }


class _Open(WireModel):
    """Arguments of a tool that is not built yet; accepted as given."""

    model_config = ConfigDict(**{**WireModel.model_config, "extra": "allow"})
    situation: str | None = Field(None)


def _not_yet(feature: str) -> Handler:
    async def handler(engine: Engine, req: Any, ctx: CallContext) -> dict[str, Any]:
        raise NotAvailableYet(f"{feature}: not available yet", tool=feature)

    return handler


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in [
        Tool(
            "orchestrate_task",
            "Decompose a task into a DAG of subtasks and run them in parallel on the agent "
            "pools. With wait: true, return when the task ends (or at timeoutSeconds).",
            OrchestrateRequest,
            _orchestrate,
        ),
        Tool(
            "analyze_orchestration_potential",
            "Plan a task without running it: parallel groups, critical path, estimated "
            "speedup and a recommended strategy.",
            AnalyzeRequest,
            _analyze,
        ),
        Tool("get_task_status", "The current state and result of a task.", TaskIdRequest, _status),
        Tool(
            "cancel_task",
            "Cancel a task: nothing new starts and running processes die.",
            TaskIdRequest,
            _cancel,
        ),
        Tool(
            "list_tasks",
            "Recent tasks, newest first, optionally by status.",
            ListTasksRequest,
            _list,
        ),
        Tool(
            "get_agent_status",
            "The agent pools: replicas, busy slots, queue depth.",
            AgentStatusRequest,
            _agents,
        ),
        Tool(
            "get_reynolds_wisdom",
            "Situation-aware advice in the Reynolds voice.",
            _Open,
            _not_yet("get_reynolds_wisdom"),
        ),
        Tool(
            "run_experiment",
            "Compare strategies on a task, simulated or executed.",
            _Open,
            _not_yet("run_experiment"),
        ),
        Tool("scale_agents", "Set a pool's replica count.", _Open, _not_yet("scale_agents")),
    ]
}


async def call_tool(
    engine: Engine, name: str, arguments: dict[str, Any], ctx: CallContext
) -> dict[str, Any]:
    """Validate `arguments` against the tool's model and run it. Raises pydantic's
    ValidationError for bad arguments, ReynoldsError for everything the tool refuses."""
    tool = TOOLS.get(name)
    if tool is None:
        raise InvalidInput(f"unknown tool {name!r}", availableTools=sorted(TOOLS))
    req = tool.model.model_validate(arguments)
    return await tool.handler(engine, req, ctx)
