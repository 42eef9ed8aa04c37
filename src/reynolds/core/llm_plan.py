"""`decompose: "llm"`: a model proposes the steps of a task, as stages, and they are checked
before anything is planned.

The model answers JSON of one shape, which the request asks the endpoint to enforce (its
grammar- or schema-constrained output):

    {"stages": [[{"name": "analyze", "agent": "code", "perComponent": true}, ...], ...]}

Every step of a stage comes after every step of the stage before; a `perComponent` step runs
once per component and, after another per-component step, waits only for its own component.
Stages make a graph without cycles by construction, so a model cannot plan a loop. Each step
runs its pool's `executor`, as pattern subtasks do. An answer that is not this JSON, names
an unknown pool or repeats a step is refused (PlanError), and the planner falls back to the
patterns.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError

from reynolds.core.decomposition import Decomposition, from_rows
from reynolds.core.models import TaskSpec, WireModel, format_validation_errors
from reynolds.core.pools import PoolSet
from reynolds.errors import InvalidInput, PlanError

MAX_STAGES = 6
MAX_STEPS_PER_STAGE = 4
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"

SYSTEM = (
    "You plan work for an orchestrator. Split the task into stages of steps: the steps of a "
    "stage run in parallel, after every step of the stage before. Mark a step perComponent "
    "when it runs once for each component. Give each step a short lower-case name and the "
    "agent pool that should run it. Answer with JSON only."
)


class PlannedStep(WireModel):
    name: str = Field(pattern=NAME_PATTERN)
    agent: str = Field(min_length=1, max_length=100)
    per_component: bool


class LlmPlan(WireModel):
    stages: list[list[PlannedStep]] = Field(min_length=1, max_length=MAX_STAGES)


def plan_schema(pools: PoolSet) -> dict[str, Any]:
    """The JSON schema of an answer, with the pools' names as the only agents."""
    step = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "agent": {"type": "string", "enum": sorted(pools.pools)},
            "perComponent": {"type": "boolean"},
        },
        "required": ["name", "agent", "perComponent"],
        "additionalProperties": False,
    }
    stage = {"type": "array", "items": step, "minItems": 1, "maxItems": MAX_STEPS_PER_STAGE}
    return {
        "type": "object",
        "properties": {
            "stages": {"type": "array", "items": stage, "minItems": 1, "maxItems": MAX_STAGES}
        },
        "required": ["stages"],
        "additionalProperties": False,
    }


def plan_prompt(spec: TaskSpec, pools: PoolSet) -> str:
    """The question for the model: the task and the pools it may choose from."""
    pool_lines = "\n".join(
        f"- {key}: {', '.join(pool.capabilities.keywords[:20]) or 'general work'}"
        for key, pool in pools.pools.items()
    )
    components = ", ".join(spec.components[:50]) or "(none)"
    return (
        f"Task type: {spec.type}\nDescription: {spec.description or '(none)'}\n"
        f"Components: {components}\nAgent pools:\n{pool_lines}\n"
        f"At most {MAX_STAGES} stages of at most {MAX_STEPS_PER_STAGE} steps."
    )


def parse_plan(text: str, spec: TaskSpec, pools: PoolSet) -> Decomposition:
    """The graph of a model's answer; PlanError naming what is wrong with it."""
    try:
        plan = LlmPlan.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise PlanError(f"the model's answer is not JSON: {exc.msg} at {exc.pos}") from exc
    except ValidationError as exc:
        first = format_validation_errors(exc.errors())[0]
        raise PlanError(f"the model's plan: {first['field']}: {first['reason']}") from exc
    rows: list[tuple[str, str | None, str, list[str]]] = []
    seen: set[str] = set()
    each: list[str | None] = list(spec.components) or [None]
    upstream: list[str] = []
    for stage in plan.stages:
        for step in stage:
            if step.name in seen:
                raise PlanError(f"the model's plan names the step {step.name!r} twice")
            seen.add(step.name)
            try:
                agent = pools.resolve(step.agent)
            except InvalidInput as exc:
                raise PlanError(f"the model's plan: {exc.message}") from exc
            targets = each if step.per_component else [None]
            rows += [(step.name, c, agent, list(upstream)) for c in targets]
        upstream = [step.name for step in stage]
    return from_rows(rows, pools, "llm", agent_fallback="")
