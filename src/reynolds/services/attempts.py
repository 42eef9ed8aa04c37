"""One attempt of a subtask: its action checked against the pool, its argv substituted, then
run on this server's runners or dispatched to a distributed worker."""

from __future__ import annotations

from typing import Any

from reynolds.core.instructions import instruction
from reynolds.core.models import Action, LlmAction, McpAction, ShellAction
from reynolds.core.pools import PoolSet, resource_limits
from reynolds.core.substitution import fill, substitute, substitute_arguments
from reynolds.errors import ActionDenied, WorkspaceError
from reynolds.services.actions import Job, LocalActions, denied
from reynolds.services.ports import ActionResult, DistributedExecutor
from reynolds.services.recording import Recorder
from reynolds.services.runs import SubState, TaskRun
from reynolds.services.workspaces import Workspaces
from reynolds.settings import Settings

# A prompt of 200,000 characters could grow 45-fold with long component names.
MAX_PROMPT_CHARS = 1_000_000


class Attempts:
    """Runs attempts: locally through `actions`, or on `distributed` workers when it is set."""

    def __init__(
        self,
        *,
        settings: Settings,
        pools: PoolSet,
        actions: LocalActions,
        distributed: DistributedExecutor | None,
        recorder: Recorder,
        workspaces: Workspaces | None = None,
    ) -> None:
        self.settings = settings
        self.workspaces = workspaces
        self.pools = pools
        self.actions = actions
        self.distributed = distributed
        self.recorder = recorder
        self.limits = {
            key: resource_limits(
                pool.limits, settings.agent_memory_limit_soft, settings.agent_memory_limit_hard
            )
            for key, pool in pools.pools.items()
        }

    @staticmethod
    def instruction(run: TaskRun, sub: SubState) -> str:
        """`{instruction}`: the subtask's part of the task, in words an agent can act on."""
        node, spec = sub.node, run.spec
        return instruction(
            task_type=spec.type,
            description=spec.description,
            step=node.step,
            component=node.component,
            pattern=run.plan.get("pattern"),
            components=len(spec.components),
            own=node.description,
        )

    async def run(self, run: TaskRun, sub: SubState, pool: str) -> ActionResult:
        """How the attempt `sub.attempts` of `sub` on `pool` ended: in the task's workspace
        when it has one (its worktree, then its changes committed), else where actions run."""
        if self.workspaces is None or "workspace" not in run.plan:
            return await self._attempt(run, sub, pool, None)
        workspaces = self.workspaces
        plan = workspaces.plan_of(run)
        if plan is not None and sub.node.id == plan.get("integrate"):
            return await self._integrate(run, sub, pool)
        try:
            path, start = await workspaces.enter(run, sub)
        except WorkspaceError as exc:
            reason = str(exc.details.get("reason", "workspace"))
            return ActionResult(False, reason=reason, error=exc.message)
        result = await self._attempt(run, sub, pool, path)
        if not result.ok or start is None:
            return result
        return await workspaces.commit(run, sub, path, start, result)

    async def _integrate(self, run: TaskRun, sub: SubState, pool: str) -> ActionResult:
        """The merge step: the branches merged, its action (the check) run on the result."""
        assert self.workspaces is not None and run.spec.workspace is not None
        merge = run.spec.workspace.merge
        assert merge is not None
        if sub.node.action is None:
            return await self.workspaces.integrate(run, sub, None, merge.check_after)

        async def check(path: str) -> ActionResult:
            return await self._attempt(run, sub, pool, path)

        return await self.workspaces.integrate(run, sub, check, merge.check_after)

    def _values(self, run: TaskRun, sub: SubState, workspace: str | None) -> dict[str, str]:
        """What the action's placeholders stand for in this attempt."""
        node = sub.node
        values = {
            "component": node.component or "",
            "taskId": run.id,
            "subtaskId": node.id,
            "step": node.step or "",
            "taskType": run.spec.type,
            "attempt": str(sub.attempts),
        }
        if self.distributed is None:  # a worker's directory is its own, unknown here
            values["workspace"] = workspace if workspace is not None else self.actions.workspace
        if node.action is not None and _wants_instruction(node.action):
            values["instruction"] = self.instruction(run, sub)
        return values

    def timeout_s(self, run: TaskRun, sub: SubState) -> float:
        """How long an attempt of `sub` may run: its own timeout, else the server's default
        (shorter for `parallel_urgent`)."""
        return sub.node.timeout_s or (
            self.settings.urgent_timeout_s
            if run.strategy.approach == "parallel_urgent"
            else self.settings.default_timeout_s
        )

    async def _attempt(
        self, run: TaskRun, sub: SubState, pool: str, workspace: str | None
    ) -> ActionResult:
        node = sub.node
        action = node.action
        spec = self.pools.pools[pool]
        refused = denied(action, spec, pool)
        if refused is not None:
            return refused
        assert action is not None  # `denied` refuses a subtask without one
        timeout_s = self.timeout_s(run, sub)
        argv: list[str] | None = None
        arguments: dict[str, Any] | None = None
        values = self._values(run, sub, workspace)
        if isinstance(action, LlmAction):
            action = _filled(action, values)
            if len(action.prompt) + len(action.system or "") > MAX_PROMPT_CHARS:
                return ActionResult(
                    False,
                    reason="denied",
                    error=f"the prompt would be longer than {MAX_PROMPT_CHARS:,} characters "
                    "after substitution",
                )
        try:
            if isinstance(action, ShellAction):
                argv = substitute(action.argv, values, allow_option_values=node.allow_option_values)
                sub.argv = argv
            elif isinstance(action, McpAction):
                arguments = substitute_arguments(action.arguments, values)
        except ActionDenied as exc:
            return ActionResult(False, reason="denied", error=exc.message)
        if self.distributed is not None:
            job = Job(
                dispatch_id="-",
                task_id=run.id,
                subtask_id=node.id,
                attempt=sub.attempts,
                dispatch=1,
                pool=pool,
                action=action,
                argv=argv,
                arguments=arguments,
                timeout_s=timeout_s,
                output_cap_bytes=self.settings.output_cap_bytes,
                lease_s=self.distributed.lease_s,
            )
            return await self.distributed.run(
                job,
                idempotent=node.idempotent,
                on_claim=lambda: self.recorder.running(run, sub, None),
            )
        return await self.actions.run(
            action,
            spec,
            task_id=run.id,
            subtask_id=node.id,
            attempt=sub.attempts,
            timeout_s=timeout_s,
            output_cap_bytes=self.settings.output_cap_bytes,
            argv=argv,
            arguments=arguments,
            pool_key=pool,
            limits=self.limits[pool],
            on_spawn=lambda pid, start: self.recorder.running(run, sub, pid, start),
            workspace=workspace,
        )


def _filled(action: LlmAction, values: dict[str, str]) -> LlmAction:
    """The action with its prompt and system text substituted."""
    system = fill(action.system, values) if action.system is not None else None
    return action.model_copy(update={"prompt": fill(action.prompt, values), "system": system})


def _wants_instruction(action: Action) -> bool:
    """Whether the action's text asks for `{instruction}` (an mcp action's arguments may hold
    it anywhere: it is always given)."""
    if isinstance(action, McpAction):
        return True
    if isinstance(action, ShellAction):
        return any("{instruction}" in element for element in action.argv)
    if isinstance(action, LlmAction):
        return "{instruction}" in action.prompt or "{instruction}" in (action.system or "")
    return False
