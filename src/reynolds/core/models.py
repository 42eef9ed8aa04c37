"""The task a user submits, as pydantic models with camelCase on the wire.

Every validation error names its field (pydantic's `loc`) and the reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from reynolds.core import wire_values
from reynolds.core.environment import env_name_problem
from reynolds.core.mcp_servers import SERVER_NAME
from reynolds.core.refnames import branch_problem

MAX_COMPONENTS = 10_000
# The most subtasks one task may expand to: REYNOLDS_MAX_SUBTASKS, given to validation as
# `context={"max_subtasks": n}` (this default without it), never above the ceiling.
MAX_SUBTASKS = 10_000
SUBTASKS_CEILING = 100_000
_ID = re.compile(r"^[A-Za-z0-9_.:@/\[\]-]{1,200}$")
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class WireModel(BaseModel):
    """camelCase on the wire, snake_case inside; unknown fields are refused.

    Strict: a number must be a JSON number (an integer will do for a float, `true` will not)
    and a boolean a JSON boolean, never a string that reads as one. Finite, too: NaN and
    the infinities are no JSON numbers. Fields whose wire form is a string (timestamps, enum
    members) say `strict=False`."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
    )


class InputModel(WireModel):
    """What a caller sends. Before any field is read, every value in it, at any depth and in
    keys too, must pass `core.wire_values`; each place that does not is named. An input model
    inside another (a task inside orchestrate_task's arguments) is not checked twice."""

    @model_validator(mode="wrap")
    @classmethod
    def _wire_values(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if _CHECKING.get():
            return handler(data)
        found = wire_values.problems(data)
        if found:
            # Raised from a validator, the error keeps these paths, under the caller's own.
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("wire_value", p.reason), loc=p.loc, input=p.value
                    )
                    for p in found
                ],
            )
        token = _CHECKING.set(True)
        try:
            return handler(data)
        finally:
            _CHECKING.reset(token)


# Set while an input model's fields are validated: its whole input has been checked.
_CHECKING: ContextVar[bool] = ContextVar("reynolds_input_checked", default=False)


class Status(StrEnum):
    PLANNED = "planned"
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    LOOP_BLOCKED = "loop_blocked"

    @property
    def finished(self) -> bool:
        return self in FINISHED


# The statuses that never change again, of a task or a subtask; `planned` is a task's alone (a
# task with nothing to run ends as it is accepted), so no subtask's count changes with it.
FINISHED = frozenset(
    {
        Status.SUCCEEDED,
        Status.FAILED,
        Status.CANCELLED,
        Status.SKIPPED,
        Status.LOOP_BLOCKED,
        Status.PLANNED,
    }
)

Priority = Literal["low", "medium", "high", "critical"]
PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
Approach = Literal["parallel_optimized", "parallel_urgent", "hybrid_intelligent", "direct"]
Selection = Literal["least_busy", "most_capable", "round_robin", "weighted"]


class ShellAction(WireModel):
    """Run an executable with arguments; never through a shell."""

    kind: Literal["shell"]
    argv: list[Annotated[str, Field(max_length=65536)]] = Field(min_length=1, max_length=4096)
    cwd: str | None = Field(None, max_length=4096)
    env: dict[str, Annotated[str, Field(max_length=65536)]] = Field(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _executable_present(cls, argv: list[str]) -> list[str]:
        if not argv[0].strip():
            raise ValueError("the first element must name an executable")
        return argv

    @field_validator("env")
    @classmethod
    def _safe_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            problem = env_name_problem(key)
            if problem is not None:
                raise PydanticCustomError("env_name", problem)
        return env


class PythonAction(WireModel):
    """Call a declared `module:function` in a worker process."""

    kind: Literal["python"]
    callable: str = Field(max_length=300)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("callable")
    @classmethod
    def _module_function(cls, value: str) -> str:
        if not _CALLABLE.match(value):
            raise ValueError("must be written module:function, e.g. 'mypkg.tasks:migrate'")
        return value


class HttpAction(WireModel):
    """One HTTP request; loopback only unless the pool lists the host."""

    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str = Field(max_length=8192, pattern=r"^https?://")
    json_body: Any = Field(None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _parses(cls, url: str) -> str:
        try:
            host = urlsplit(url).hostname
        except ValueError as exc:  # "Invalid IPv6 URL": a "]" with no "[", say
            raise ValueError(f"not a URL that can be read: {exc}") from None
        if not host:
            raise ValueError("names no host")
        return url


class McpAction(WireModel):
    """Call `tool` on an MCP server the pool declares (`mcpServers` in agents.yaml), by name.

    `{component}`, `{taskId}`, ... are substituted inside every string of `arguments`."""

    kind: Literal["mcp"]
    server: str = Field(pattern=SERVER_NAME)
    tool: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)


class LlmAction(WireModel):
    """A prompt to the configured OpenAI-compatible endpoint; `{component}`, `{taskId}`, ...
    are substituted in `prompt` and `system`. `responseFormat` is passed as the endpoint's
    `response_format` (e.g. `{"type": "json_object"}` or a JSON schema)."""

    kind: Literal["llm"]
    prompt: str = Field(min_length=1, max_length=200_000)
    system: str | None = Field(None, max_length=200_000)
    model: str | None = Field(None, min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    response_format: dict[str, Any] | None = None


Action = Annotated[
    ShellAction | PythonAction | HttpAction | McpAction | LlmAction, Field(discriminator="kind")
]


class RunOptions(WireModel):
    """What a step and an explicit subtask share: how to run, retry and estimate it."""

    agent: str | None = Field(None, max_length=100)
    description: str = Field("", max_length=10_000)
    action: Action
    timeout_seconds: float | None = Field(None, gt=0, le=86_400)
    retries: int = Field(0, ge=0, le=10)
    estimated_seconds: float | None = Field(None, ge=0, le=86_400 * 7)
    idempotent: bool = True
    allow_option_values: bool = False
    # False: loop prevention never stops it (a wait-until-ready poll repeats on purpose).
    loop_prevention: bool = True


class Step(RunOptions):
    """A step, run once per component; `after` names steps of the same component."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    after: list[str] = Field(default_factory=list)


class SubtaskSpec(RunOptions):
    """One node of an explicit DAG."""

    id: str = Field(min_length=1, max_length=200)
    depends_on: list[str] = Field(default_factory=list)
    component: str | None = Field(None, max_length=500)

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("may use letters, digits and _ . : @ / [ ] - only")
        return value


class Budget(WireModel):
    """What a task may spend; over it nothing new starts and the task fails
    (`budget_exceeded`, naming the budget)."""

    wall_clock_seconds: float | None = Field(None, gt=0, le=86_400 * 30)
    attempts: int | None = Field(None, ge=1, le=10_000_000)
    subtasks: int | None = Field(None, ge=1, le=SUBTASKS_CEILING)
    tokens: int | None = Field(None, ge=1)
    cost: float | None = Field(None, gt=0)


class Merge(WireModel):
    """Merge the subtasks' branches into a new branch `into` once they have ended, running
    `check` in the merged tree after each merge (`checkAfter: each`) or once at the end."""

    into: str = Field(min_length=1, max_length=200)
    check: Action | None = None
    check_after: Literal["each", "end"] = "each"
    agent: str | None = Field(None, max_length=100)
    timeout_seconds: float | None = Field(None, gt=0, le=86_400)

    @field_validator("into")
    @classmethod
    def _branch(cls, into: str) -> str:
        why = branch_problem(into)
        if why is not None:
            raise ValueError(f"branch {into!r} {why}")
        return into


class Workspace(WireModel):
    """The git repository a task works on; with `isolate: worktree` each subtask works in its
    own worktree on its own branch (see services/workspaces.py)."""

    repo: str = Field(min_length=1, max_length=4096)
    base: str = Field("HEAD", min_length=1, max_length=200, pattern=r"^[^-\s][^\s]*$")
    isolate: Literal["worktree", "none"] = "worktree"
    merge: Merge | None = None
    keep_branches: bool = True

    @model_validator(mode="after")
    def _merge_needs_branches(self) -> Workspace:
        if self.merge is not None and self.isolate != "worktree":
            raise ValueError("merge needs isolate: worktree (there are no branches to merge)")
        return self


class TaskSpec(InputModel):
    """What to do: a type, a description, components, and steps or subtasks."""

    type: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=20_000)
    components: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=MAX_COMPONENTS
    )
    priority: Priority = "medium"
    deadline: datetime | None = Field(None, strict=False)
    budget: Budget | None = None
    steps: list[Step] | None = Field(None, min_length=1, max_length=100)
    subtasks: list[SubtaskSpec] | None = Field(None, min_length=1, max_length=SUBTASKS_CEILING)
    decompose: Literal["patterns", "llm"] = "patterns"
    workspace: Workspace | None = None

    @field_validator("components")
    @classmethod
    def _unique_components(cls, components: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in components:
            if name in seen:
                raise ValueError(f"component {name!r} is listed twice")
            seen.add(name)
        return components

    @field_validator("deadline")
    @classmethod
    def _aware(cls, deadline: datetime | None) -> datetime | None:
        """A deadline without a time zone is read as UTC."""
        if deadline is not None and deadline.tzinfo is None:
            return deadline.replace(tzinfo=UTC)
        return deadline

    @model_validator(mode="after")
    def _one_shape(self, info: ValidationInfo) -> TaskSpec:
        if self.steps is not None and self.subtasks is not None:
            raise ValueError("give either steps or subtasks, not both")
        limit = subtask_limit(info.context)
        if self.steps is not None:
            dupes = _repeated(s.name for s in self.steps)
            if dupes:
                raise ValueError(f"step names must be unique; repeated: {', '.join(dupes)}")
            # Each step runs once per component: the product is what the engine would hold.
            count = len(self.steps) * max(len(self.components), 1)
            if count > limit:
                raise ValueError(
                    f"{len(self.steps)} steps × {len(self.components)} components would make "
                    f"{count} subtasks; at most {limit} (REYNOLDS_MAX_SUBTASKS)"
                )
        if self.subtasks is not None:
            if len(self.subtasks) > limit:
                raise ValueError(
                    f"{len(self.subtasks)} subtasks; at most {limit} (REYNOLDS_MAX_SUBTASKS)"
                )
            dupes = _repeated(s.id for s in self.subtasks)
            if dupes:
                raise ValueError(f"subtask ids must be unique; repeated: {', '.join(dupes[:10])}")
        return self


def subtask_limit(context: Any) -> int:
    """The most subtasks a task may expand to under this validation's `context`."""
    if isinstance(context, dict):
        given = context.get("max_subtasks")
        if isinstance(given, int) and 1 <= given <= SUBTASKS_CEILING:
            return given
    return MAX_SUBTASKS


def _repeated(values: Iterable[str]) -> list[str]:
    """The values given more than once, sorted; in linear time (a task has up to 10,000)."""
    return sorted(value for value, count in Counter(values).items() if count > 1)


class Strategy(WireModel):
    """How to run: the approach, the concurrency cap and the pool selection."""

    approach: Approach = "parallel_optimized"
    max_concurrency: int = Field(5, ge=1, le=1024)
    selection: Selection = "least_busy"


class OrchestrateRequest(InputModel):
    task: TaskSpec
    strategy: Strategy | None = None
    wait: bool = False
    # Run it even when loop prevention would refuse it as a resubmission loop.
    force: bool = False
    # The task and subtask whose action submits this one (REYNOLDS_TASK_ID and
    # REYNOLDS_SUBTASK_ID in an action's environment): runaway orchestration is judged on it.
    parent_task_id: str | None = Field(None, min_length=1, max_length=64)
    parent_subtask_id: str | None = Field(None, min_length=1, max_length=1000)
    timeout_seconds: float = Field(300.0, gt=0, le=3600)


class AnalyzeRequest(InputModel):
    task: TaskSpec
    strategy: Strategy | None = None


class TaskIdRequest(InputModel):
    task_id: str = Field(min_length=1, max_length=64)


class SubtasksRequest(InputModel):
    """A page of a task's subtasks: from `cursor` (the `nextCursor` of the page before, or of
    a truncated answer), at most `limit` (REYNOLDS_RESULT_SUBTASKS by default and at most),
    only those with `status` if given."""

    task_id: str = Field(min_length=1, max_length=64)
    cursor: str = Field("0", pattern=r"^[0-9]{1,9}$")
    limit: int | None = Field(None, ge=1, le=SUBTASKS_CEILING)
    status: Status | None = Field(None, strict=False)


class ListTasksRequest(InputModel):
    status: Status | None = Field(None, strict=False)
    limit: int = Field(50, ge=1, le=1000)


class AgentStatusRequest(InputModel):
    agent_type: str = Field("all", max_length=100)


class ScaleRequest(InputModel):
    agent_type: str = Field(min_length=1, max_length=100)
    replicas: int = Field(ge=0, le=10_000)


class AutoscaleRequest(InputModel):
    dry_run: bool = False


def format_validation_errors(errors: list[Any]) -> list[dict[str, str]]:
    """pydantic errors as `{field, reason}` pairs with dotted camelCase field paths."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc) or "(body)", "reason": str(err.get("msg", "invalid"))})
    return out
