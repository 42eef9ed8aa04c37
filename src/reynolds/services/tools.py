"""The one tool registry behind REST (`/mcp/tools/...`) and MCP alike."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from reynolds.core.audit import redact_text
from reynolds.core.experiments import Scenario
from reynolds.core.loops import LoopVerdict
from reynolds.core.models import (
    AgentStatusRequest,
    AnalyzeRequest,
    AutoscaleRequest,
    InputModel,
    ListTasksRequest,
    OrchestrateRequest,
    ScaleRequest,
    Status,
    SubtasksRequest,
    TaskIdRequest,
    format_validation_errors,
)
from reynolds.core.reporting import iso
from reynolds.core.wire_values import printable
from reynolds.core.wisdom import WisdomRequest
from reynolds.errors import InvalidInput, ReynoldsError
from reynolds.services import wisdom
from reynolds.services.analysis import CachedAnalysis, analyze
from reynolds.services.engine import Engine
from reynolds.services.events import EventBus
from reynolds.services.experiments import Experiments
from reynolds.services.lineage import Parent
from reynolds.services.progress import ProgressFn, follow
from reynolds.services.resubmissions import Refused

# Far deeper than any real task; shallow enough that validating, storing and serialising the
# arguments never exhausts a recursion limit (which would be a 500, not a 422).
MAX_ARGUMENT_DEPTH = 64


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling (the token's name when tokens are configured), the server's cached
    analysis and its event bus when it has them, and where progress goes (None: nowhere)."""

    token_name: str | None = None
    analyses: CachedAnalysis | None = None
    events: EventBus | None = None
    progress: ProgressFn | None = None


Handler = Callable[[Engine, Any, CallContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's result, and the same as compact JSON text: encoded once, sent as both."""

    structured: dict[str, Any]
    text: str

    @classmethod
    def of(cls, result: dict[str, Any]) -> ToolResult:
        return cls(result, json.dumps(result, separators=(",", ":")))


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    model: type[BaseModel]
    handler: Handler

    def input_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema(by_alias=True)


async def _orchestrate(engine: Engine, req: OrchestrateRequest, ctx: CallContext) -> dict[str, Any]:
    parent = (
        Parent(req.parent_task_id, req.parent_subtask_id)
        if req.parent_task_id is not None
        else None
    )
    # A client that waits without progress hears of the task only from the result below,
    # which is read once everything written of it is committed. One that does not wait is
    # answered as the task was accepted, before it starts: the answer waits for nothing the
    # running task writes.
    told_early = not req.wait or ctx.progress is not None
    try:
        run = await engine.submit(
            req.task,
            req.strategy,
            ctx.token_name,
            force=req.force,
            parent=parent,
            durable=told_early,
            start=req.wait,
        )
    except Refused as refused:
        return _refused(engine, refused.verdict)
    if not req.wait:
        try:
            return await engine.result(run.id)
        finally:
            engine.start(run)  # once the answer is made (or failed to be)
    if ctx.progress is not None and ctx.events is not None:
        await follow(run, ctx.events, req.timeout_seconds, ctx.progress)
    else:
        await engine.wait(run, req.timeout_seconds)
    return await engine.result(run.id)


_REFUSED_COMMENT = {
    "runaway_depth": "Tasks starting tasks starting tasks: a hall of mirrors. Let's step out.",
    "runaway_fanout": "One step launching task after task? Let's catch our breath first.",
    "": "Third time wasn't the charm, friend. Let's change something first.",
}


def _refused(engine: Engine, verdict: LoopVerdict) -> dict[str, Any]:
    """The answer to a submission loop prevention would not run: the evidence, no task."""
    seen = verdict.evidence
    if verdict.detector == "runaway_depth":
        why = f"it would be the {seen['depth']}th generation of tasks started by tasks"
    elif verdict.detector == "runaway_fanout":
        why = f"subtask {seen['parentSubtaskId']} would have started {seen['children']} tasks"
    else:
        why = f"the same task ended failed the same way {seen['count']} times in a row"
    message = (
        f"Not run: {why} (confidence {verdict.confidence:.4g}); change it, or pass "
        "force: true to run it anyway."
    )
    on = engine.settings.personality == "on"
    return {
        "success": False,
        "taskId": None,
        "status": str(Status.LOOP_BLOCKED),
        "loop": verdict.view(),
        "message": message,
        "reynoldsComment": _REFUSED_COMMENT.get(verdict.detector, _REFUSED_COMMENT[""])
        if on
        else message,
        "timestamp": iso(engine.clock()),
    }


async def _analyze(engine: Engine, req: AnalyzeRequest, ctx: CallContext) -> dict[str, Any]:
    if ctx.analyses is not None:
        return await ctx.analyses.analyze(req.task, req.strategy)
    return await analyze(engine, req.task, req.strategy)


async def _status(engine: Engine, req: TaskIdRequest, ctx: CallContext) -> dict[str, Any]:
    return await engine.result(req.task_id)


async def _subtasks(engine: Engine, req: SubtasksRequest, ctx: CallContext) -> dict[str, Any]:
    return await subtasks_page(engine, req)


async def subtasks_page(engine: Engine, req: SubtasksRequest) -> dict[str, Any]:
    """The page `req` asks for; InvalidInput for a limit over REYNOLDS_RESULT_SUBTASKS."""
    most = engine.settings.result_subtasks
    if req.limit is not None and req.limit > most:
        raise InvalidInput(
            f"limit {req.limit} is over {most} (REYNOLDS_RESULT_SUBTASKS)", field="limit"
        )
    status = str(req.status) if req.status is not None else None
    return await engine.subtasks(req.task_id, int(req.cursor), req.limit or most, status)


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
    healthy = sum(engine.control.healthy(p["type"]) for p in pools)
    avg = sum(p["utilization"] for p in pools) / len(pools) if pools else 0.0
    tripped = [p["type"] for p in pools if p["circuit"] != "closed"]
    on = engine.settings.personality == "on"
    if tripped:
        comment = (
            f"{', '.join(tripped)} tripped a circuit breaker; routing around it while it rests."
            if on
            else f"circuit breaker not closed: {', '.join(tripped)}."
        )
    else:
        comment = (
            f"{total} agents standing by, {busy} busy. Everyone's hydrated and ready."
            if on
            else f"{total} replicas, {busy} busy."
        )
    thresholds = {t["type"]: t for t in engine.autoscaler.thresholds_view()}
    for pool in pools:
        pool["thresholds"] = thresholds[pool["type"]]
    if not engine.store.durable(engine.store.write_mark()):
        await engine.store.flush()
    recent = await asyncio.to_thread(engine.store.scaling_events, 10)
    return {
        "pools": pools,
        "recentScaling": [_scaling_view(row) for row in recent],
        "downstreams": engine.dispatch.guards.downstream_views(engine.clock()),
        "summary": {
            "totalAgents": total,
            "healthyAgents": healthy,
            "busyAgents": busy,
            "averageUtilization": round(avg, 3),
        },
        "reynoldsComment": comment,
    }


def _scaling_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "agentType": row["pool"],
        "from": row["from_replicas"],
        "to": row["to_replicas"],
        "reason": row["reason"],
        "source": row["source"],
        "at": iso(row["at"]),
    }


async def _scale(engine: Engine, req: ScaleRequest, ctx: CallContext) -> dict[str, Any]:
    who = f"by {ctx.token_name}" if ctx.token_name else "by request"
    pool = engine.scale(req.agent_type, req.replicas, f"manual, {who}", "manual")
    if engine.distributed is not None:
        # The workers' pools answer the control command; report them as they then stand.
        await engine.scaled()
        pool = next(p for p in engine.pool_status() if p["type"] == pool["type"])
    return {"pool": pool, "pools": engine.pool_status()}


async def _autoscale(engine: Engine, req: AutoscaleRequest, ctx: CallContext) -> dict[str, Any]:
    decisions = await engine.autoscaler.evaluate_everywhere(apply=not req.dry_run)
    return {"dryRun": req.dry_run, "decisions": decisions, "pools": engine.pool_status()}


async def _wisdom(engine: Engine, req: WisdomRequest, ctx: CallContext) -> dict[str, Any]:
    return wisdom.answer(engine, req, engine.clock())


class ExperimentRequest(InputModel):
    scenario: Scenario


async def _experiment(engine: Engine, req: ExperimentRequest, ctx: CallContext) -> dict[str, Any]:
    return await Experiments(engine, clock=engine.clock).run(req.scenario)


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
            "get_task_subtasks",
            "A page of a task's subtasks (optionally by status), each with its parallel group "
            "and whether it is on the critical path; `nextCursor` continues.",
            SubtasksRequest,
            _subtasks,
        ),
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
            WisdomRequest,
            _wisdom,
        ),
        Tool(
            "run_experiment",
            "Compare strategies on a task: simulated on the scheduler's own policy with "
            "durations learned from history (or executed for real), with intervals, a "
            "Mann-Whitney U p-value and a winner only when the difference is significant.",
            ExperimentRequest,
            _experiment,
        ),
        Tool(
            "scale_agents",
            "Set a pool's replica count, within its minimum and maximum.",
            ScaleRequest,
            _scale,
        ),
        Tool(
            "autoscale_agents",
            "Evaluate auto-scaling for every pool now; apply the changes unless dryRun.",
            AutoscaleRequest,
            _autoscale,
        ),
    ]
}


def list_tools() -> list[dict[str, Any]]:
    """`[{name, description, inputSchema}]`: the registry as REST and MCP list it."""
    return [
        {"name": t.name, "description": t.description, "inputSchema": t.input_schema()}
        for t in TOOLS.values()
    ]


async def call_tool(
    engine: Engine,
    name: str,
    arguments: dict[str, Any],
    ctx: CallContext,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Validate `arguments` against the tool's model and run it, reporting `progress` while a
    waiting orchestrate_task waits (given the context's event bus). Raises ReynoldsError for
    everything the tool refuses: bad arguments are InvalidInput `{error: "invalid arguments",
    errors: [{field, reason}]}`, each field named from `arguments.`. Every call, refused ones
    included, leaves one audit record."""
    if progress is not None:
        ctx = replace(ctx, progress=progress)
    try:
        return await _audited(engine, name, arguments, ctx)
    except ValidationError as exc:
        raise invalid_arguments(exc) from None


def invalid_arguments(exc: ValidationError) -> InvalidInput:
    """The 422 of arguments that do not validate, naming each field and why."""
    errors = [
        {"field": f"arguments.{e['field']}", "reason": e["reason"]}
        for e in format_validation_errors(list(exc.errors()))
    ]
    return InvalidInput("invalid arguments", errors=errors)


async def _audited(
    engine: Engine, name: str, arguments: dict[str, Any], ctx: CallContext
) -> dict[str, Any]:
    started_at, started = engine.clock(), time.perf_counter()
    task_id = arguments.get("taskId") if isinstance(arguments, dict) else None
    try:
        tool = TOOLS.get(name)
        if tool is None:
            raise InvalidInput(f"unknown tool {name!r}", availableTools=sorted(TOOLS))
        if _depth_over(arguments, MAX_ARGUMENT_DEPTH):
            raise InvalidInput(f"arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels")
        req = tool.model.model_validate(
            arguments, context={"max_subtasks": engine.settings.max_subtasks}
        )
        result = await tool.handler(engine, req, ctx)
    except BaseException as exc:  # recorded, then raised as it was (cancellation included)
        decision, outcome, detail = _refusal(exc)
        _audit(engine, ctx, name, task_id, started_at, started, decision, outcome, detail)
        raise
    _audit(engine, ctx, name, result.get("taskId", task_id), started_at, started, "allowed", "ok")
    return result


def _depth_over(value: Any, limit: int) -> bool:
    """Whether JSON-like `value` nests deeper than `limit` (without recursing itself)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _refusal(exc: BaseException) -> tuple[str, str, str | None]:
    """(decision, outcome, detail) of a call that raised `exc`."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        return "rejected", "invalid_arguments", redact_text("invalid: " + ", ".join(fields))
    if isinstance(exc, ReynoldsError):
        decision = "rejected" if exc.status_code == 422 else "allowed"
        if exc.status_code == 403:
            decision = "denied"
        return decision, _snake(type(exc).__name__), redact_text(exc.message)
    if isinstance(exc, Exception):
        return "allowed", "error", redact_text(f"{type(exc).__name__}: {exc}")
    return "allowed", "cancelled", None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _audit(
    engine: Engine,
    ctx: CallContext,
    tool: str,
    task_id: Any,
    started_at: float,
    started: float,
    decision: str,
    outcome: str,
    detail: str | None = None,
) -> None:
    # The tool name and task id are the caller's text, refused calls' included: escaped, so
    # that the store can always write the record (a NUL or a lone surrogate would make it give
    # up every write committed with it).
    engine.store.add_audit(
        {
            "at": started_at,
            "kind": "tool",
            "token_name": ctx.token_name,
            "tool": printable(tool)[:64],
            "task_id": printable(task_id)[:64] if isinstance(task_id, str) else None,
            "decision": decision,
            "outcome": outcome,
            "detail": printable(detail) if detail is not None else None,
            "duration_s": time.perf_counter() - started,
        }
    )
    engine.metrics.audited("tool", decision)
