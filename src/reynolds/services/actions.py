"""Running one action under its pool's rules: the same code on the server and on a worker.

A dispatch to a distributed worker travels as a `Job` and its outcome comes back as a
`JobResult`; both are plain JSON so that nothing but data crosses the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from reynolds.core.mcp_servers import refusal
from reynolds.core.models import (
    Action,
    HttpAction,
    LlmAction,
    McpAction,
    PythonAction,
    ShellAction,
    WireModel,
)
from reynolds.core.pools import PoolSpec, ResourceLimits
from reynolds.core.wire_values import encodable
from reynolds.errors import ActionDenied
from reynolds.services.ports import (
    ActionContext,
    ActionResult,
    HttpActionRunner,
    LlmActionRunner,
    McpActionRunner,
    PythonActionRunner,
    ShellActionRunner,
)


@dataclass(frozen=True, slots=True)
class Runners:
    """The runners of one process; all but `shell` may be absent."""

    shell: ShellActionRunner
    python: PythonActionRunner | None = None
    http: HttpActionRunner | None = None
    mcp: McpActionRunner | None = None
    llm: LlmActionRunner | None = None

    async def aclose(self) -> None:
        for runner in (self.python, self.http, self.mcp, self.llm):
            if runner is not None:
                await runner.aclose()


def denied(action: Action | None, pool: PoolSpec, pool_key: str) -> ActionResult | None:
    """The result of an action `pool` does not permit (its kind; for mcp, a server it does not
    declare or a tool outside that server's list), or None when it may run."""
    if action is None or action.kind not in pool.action_kinds:
        kind = getattr(action, "kind", "none")
        return ActionResult(
            False, reason="denied", error=f"{kind} actions are not permitted in the {pool_key} pool"
        )
    if isinstance(action, McpAction):
        why = refusal(pool.mcp_servers, action.server, action.tool, pool_key)
        if why is not None:
            return ActionResult(False, reason="denied", error=why)
    return None


@dataclass(frozen=True, slots=True)
class LocalActions:
    """Runs permitted actions on this process's runners, in its workspace: the same code on
    the server (local pools) and in a distributed worker."""

    runners: Runners
    workspace: str
    # Reads a pool's `secrets` ({ENV_NAME: file}); None: pools may declare none.
    secrets: Callable[[Mapping[str, str]], dict[str, str]] | None = None

    async def run(
        self,
        action: Action,
        pool: PoolSpec,
        *,
        task_id: str,
        subtask_id: str,
        attempt: int,
        timeout_s: float,
        output_cap_bytes: int,
        argv: list[str] | None = None,
        arguments: dict[str, Any] | None = None,
        pool_key: str,
        limits: ResourceLimits | None = None,
        on_spawn: Callable[[int, int | None], None] | None = None,
        workspace: str | None = None,
    ) -> ActionResult:
        """Run `action` (a shell action's `argv`, an mcp action's `arguments`, already
        substituted) under `pool`'s rules for executables, callables, hosts and servers; it
        was checked with `denied`. It runs in `workspace` (a task's worktree) when given,
        else in this process's."""
        ctx = ActionContext(
            task_id=task_id,
            subtask_id=subtask_id,
            attempt=attempt,
            timeout_s=timeout_s,
            output_cap_bytes=output_cap_bytes,
            # Only a shell action runs in a task's worktree: an mcp stdio server, say, outlives it.
            workspace=workspace
            if workspace is not None and isinstance(action, ShellAction)
            else self.workspace,
            on_spawn=on_spawn,
        )
        runners = self.runners
        if isinstance(action, ShellAction):
            try:
                secret_env = self._secrets(pool)
            except ActionDenied as exc:
                reason = str(exc.details.get("reason", "denied"))
                return ActionResult(False, reason=reason, error=exc.message)
            return await runners.shell.run(
                action,
                ctx,
                argv=argv,
                executables=pool.executables,
                limits=limits,
                secret_env=secret_env,
            )
        if isinstance(action, PythonAction) and runners.python is not None:
            return await runners.python.run(action, ctx, allowed=pool.callables)
        if isinstance(action, HttpAction) and runners.http is not None:
            return await runners.http.run(action, ctx, allowed_hosts=pool.http_hosts)
        if isinstance(action, McpAction) and runners.mcp is not None:
            server = pool.mcp_servers.get(action.server)
            if server is None:  # `denied` refuses it first; kept for a caller that did not ask
                return ActionResult(False, reason="denied", error="MCP server not declared")
            return await runners.mcp.run(
                action,
                ctx,
                pool=pool_key,
                server=server,
                arguments=action.arguments if arguments is None else arguments,
            )
        if isinstance(action, LlmAction) and runners.llm is not None:
            return await runners.llm.run(action, ctx)
        return ActionResult(
            False,
            reason="not_available",
            error=f"{action.kind} actions: this server has no runner for them",
        )

    def _secrets(self, pool: PoolSpec) -> dict[str, str] | None:
        """The pool's credentials as environment variables (ActionDenied when unreadable)."""
        if not pool.secrets:
            return None
        if self.secrets is None:
            raise ActionDenied("this process reads no secrets for agents", reason="denied")
        return self.secrets(pool.secrets)


class Job(WireModel):
    """One dispatch of one attempt of a subtask to a worker of `pool`.

    `dispatch_id` is the fencing token: only the newest dispatch of a subtask may claim it,
    renew its lease or report its result."""

    dispatch_id: str = Field(min_length=1, max_length=100)
    task_id: str = Field(min_length=1, max_length=100)
    subtask_id: str = Field(min_length=1, max_length=500)
    attempt: int = Field(ge=1)
    dispatch: int = Field(ge=1)
    pool: str = Field(min_length=1, max_length=100)
    action: Action
    argv: list[str] | None = None
    # An mcp action's arguments after substitution.
    arguments: dict[str, Any] | None = None
    timeout_s: float = Field(gt=0, alias="timeoutSeconds")
    output_cap_bytes: int = Field(ge=1)
    lease_s: float = Field(gt=0, alias="leaseSeconds")
    # The dispatching server's inbox on the broker's Redis, where the worker claims and reports.
    inbox: str | None = Field(None, max_length=300)
    # An idempotent job's claim is not waited for (see adapters/executors/celery_channel.py).
    idempotent: bool = False


# 64 Ki characters: at most 6 bytes each as JSON escapes, both fit in the 1 MiB body limit.
WIRE_TEXT_CHARS = 64 * 1024


class JobResult(WireModel):
    """How a dispatched action ended, as the worker reports it."""

    ok: bool
    exit_code: int | None = None
    output: str = Field("", max_length=WIRE_TEXT_CHARS)
    error: str = Field("", max_length=WIRE_TEXT_CHARS)
    reason: str | None = Field(None, max_length=100)
    output_bytes: int = Field(0, ge=0)
    truncated: bool = False
    retry_after_s: float | None = Field(None, ge=0, le=3600)
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0)

    @classmethod
    def of(cls, result: ActionResult) -> JobResult:
        """The wire form; output and error keep their last WIRE_TEXT_CHARS characters, so a
        report always fits the server's body limit however the text escapes in JSON."""
        # Lone surrogates (a decoder of the remote server's choosing) are no JSON text.
        output, error = encodable(result.output), encodable(result.error)
        return cls(
            ok=result.ok,
            exit_code=result.exit_code,
            output=output[-WIRE_TEXT_CHARS:],
            error=error[-WIRE_TEXT_CHARS:],
            reason=result.reason,
            output_bytes=result.output_bytes,
            truncated=result.truncated
            or len(output) > WIRE_TEXT_CHARS
            or len(error) > WIRE_TEXT_CHARS,
            retry_after_s=result.retry_after_s,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost=result.cost,
        )

    def to_result(self) -> ActionResult:
        return ActionResult(
            ok=self.ok,
            exit_code=self.exit_code,
            output=self.output,
            error=self.error,
            reason=self.reason,
            output_bytes=self.output_bytes,
            truncated=self.truncated,
            retry_after_s=self.retry_after_s,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=self.cost,
        )
