"""The MCP backend inside the server process: the tool and resource registries on its engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from reynolds.bootstrap import Container
from reynolds.core.models import OrchestrateRequest, format_validation_errors
from reynolds.entrypoints.mcp.backend import (
    ProgressFn,
    ResourceBody,
    ResourceFailed,
    ToolFailed,
    finished_count,
    progress_message,
)
from reynolds.errors import ReynoldsError
from reynolds.services import resources
from reynolds.services.runs import TaskRun
from reynolds.services.tools import TOOLS, CallContext, call_tool


class LocalBackend:
    """Tools and resources of this process's engine; `container` is read per call because the
    app builds it in its lifespan, after this backend exists."""

    def __init__(self, container: Callable[[], Container]) -> None:
        self._container = container

    async def list_tools(self) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema()}
            for t in TOOLS.values()
        ]

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        progress: ProgressFn | None,
        caller: str | None = None,
    ) -> dict[str, Any]:
        ctx = CallContext(caller, self._container().analyses)
        try:
            if progress is not None and name == "orchestrate_task":
                return await self._orchestrate(arguments, ctx, progress)
            return await call_tool(self._container().engine, name, arguments, ctx)
        except ValidationError as exc:
            errors = [
                {"field": f"arguments.{e['field']}", "reason": e["reason"]}
                for e in format_validation_errors(list(exc.errors()))
            ]
            raise ToolFailed({"error": "invalid arguments", "errors": errors}) from None
        except ReynoldsError as exc:
            raise ToolFailed(exc.to_dict()) from None

    async def _orchestrate(
        self, arguments: dict[str, Any], ctx: CallContext, progress: ProgressFn
    ) -> dict[str, Any]:
        """orchestrate_task through the registry, reporting progress while it waits."""
        container = self._container()
        engine = container.engine
        if arguments.get("wait") is not True:
            return await call_tool(engine, "orchestrate_task", arguments, ctx)
        submitted = await call_tool(engine, "orchestrate_task", {**arguments, "wait": False}, ctx)
        # The registry has just accepted these arguments (wait aside), so this cannot fail.
        req = OrchestrateRequest.model_validate(arguments)
        task_id = str(submitted["taskId"])
        run = engine.find(task_id)
        if run is not None:
            sub = container.bus.subscribe(task_id)
            try:
                await _follow(run, sub.next, req.timeout_seconds, progress)
            finally:
                sub.close()
        return await engine.result(task_id)

    async def list_resources(self) -> list[dict[str, str]]:
        return resources.listing()

    async def read_resource(self, uri: str) -> ResourceBody:
        try:
            contents = await resources.read(self._container().engine, resources.name_of(uri))
        except ReynoldsError as exc:
            raise ResourceFailed(exc.to_dict()) from None
        return ResourceBody(contents.mime_type, contents.text)


async def _follow(
    run: TaskRun,
    next_event: Callable[[float], Awaitable[object]],
    timeout_s: float,
    progress: ProgressFn,
) -> None:
    """Report progress whenever a subtask ends, until the task ends or `timeout_s` passes.

    The counts come from the run's state, not from the events, so an event that went by
    before the subscription cannot make them wrong; `done` is set before the store commits
    the task's last event, so checking it before each wait loses no wake-up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    total = len(run.subs)
    reported = -1
    while True:
        done = finished_count([str(s.status) for s in run.subs.values()])
        if done > reported:
            await progress(done, total, progress_message(done, total))
            reported = done
        remaining = deadline - loop.time()
        if run.done.is_set() or remaining <= 0:
            return
        await next_event(remaining)
