"""Numbers and booleans in tool arguments must be JSON numbers and booleans: `"5"` is not 5 and
`true` is not 1. An integer is a number, and enums and timestamps keep their string forms."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from pydantic import ValidationError

from reynolds.core.models import TaskSpec
from reynolds.services.tools import TOOLS

SHELL = {"kind": "shell", "argv": ["true"]}
LLM = {"kind": "llm", "prompt": "p", "maxTokens": 16}
RUN_OPTIONS = {
    "timeoutSeconds": 30.5,
    "retries": 2,
    "estimatedSeconds": 4.0,
    "idempotent": True,
    "allowOptionValues": False,
    "loopPrevention": True,
}
ORCHESTRATE = {
    "task": {
        "type": "t",
        "priority": "high",
        "deadline": "2030-01-01T00:00:00Z",
        "budget": {
            "wallClockSeconds": 600.0,
            "attempts": 10,
            "subtasks": 5,
            "tokens": 1000,
            "cost": 2.5,
        },
        "components": ["a"],
        "steps": [{"name": "s", "action": SHELL, **RUN_OPTIONS}, {"name": "l", "action": LLM}],
        "workspace": {
            "repo": "/srv/repo",
            "keepBranches": True,
            "merge": {"into": "merged", "timeoutSeconds": 30.0},
        },
    },
    "strategy": {"approach": "direct", "maxConcurrency": 3, "selection": "weighted"},
    "wait": False,
    "force": False,
    "timeoutSeconds": 60.0,
}
ANALYZE = {
    "task": {
        "type": "t",
        "subtasks": [{"id": "x", "action": SHELL, **RUN_OPTIONS}, {"id": "y", "action": LLM}],
        "budget": ORCHESTRATE["task"]["budget"],  # type: ignore[index]
        "workspace": ORCHESTRATE["task"]["workspace"],  # type: ignore[index]
    },
    "strategy": {"maxConcurrency": 2},
}
EXPERIMENT = {
    "scenario": {
        "name": "e",
        "task": ANALYZE["task"],
        "strategies": [
            {"name": "a", "maxConcurrency": 2, "retries": 1, "failureRate": 0.1},
            {"name": "b"},
        ],
        "repetitions": 3,
        "seed": 1,
    }
}
BASES: dict[str, dict[str, Any]] = {
    "orchestrate_task": ORCHESTRATE,
    "analyze_orchestration_potential": ANALYZE,
    "run_experiment": EXPERIMENT,
    "list_tasks": {"status": "running", "limit": 10},
    "get_task_subtasks": {"taskId": "0123abcd", "limit": 10},
    "scale_agents": {"agentType": "code", "replicas": 2},
    "autoscale_agents": {"dryRun": True},
}

INT, FLOAT, BOOL = "integer", "number", "boolean"
# The number and boolean run options of a step or subtask.
RUN_OPTION_FIELDS = [
    ("timeoutSeconds", FLOAT),
    ("retries", INT),
    ("estimatedSeconds", FLOAT),
    ("idempotent", BOOL),
    ("allowOptionValues", BOOL),
    ("loopPrevention", BOOL),
]
# Every number and boolean field of every tool's arguments.
FIELDS: list[tuple[str, tuple[Any, ...], str]] = [
    ("orchestrate_task", ("strategy", "maxConcurrency"), INT),
    ("orchestrate_task", ("wait",), BOOL),
    ("orchestrate_task", ("force",), BOOL),
    ("orchestrate_task", ("timeoutSeconds",), FLOAT),
    *[
        (tool_name, ("task", "budget", name), kind)
        for tool_name in ("orchestrate_task", "analyze_orchestration_potential")
        for name, kind in [
            ("wallClockSeconds", FLOAT),
            ("attempts", INT),
            ("subtasks", INT),
            ("tokens", INT),
            ("cost", FLOAT),
        ]
    ],
    *[("orchestrate_task", ("task", "steps", 0, name), kind) for name, kind in RUN_OPTION_FIELDS],
    *[
        ("analyze_orchestration_potential", ("task", "subtasks", 0, name), kind)
        for name, kind in RUN_OPTION_FIELDS
    ],
    *[
        (tool_name, ("task", "workspace", *path), kind)
        for tool_name in ("orchestrate_task", "analyze_orchestration_potential")
        for path, kind in [(("keepBranches",), BOOL), (("merge", "timeoutSeconds"), FLOAT)]
    ],
    *[
        ("run_experiment", ("scenario", "task", "subtasks", 0, name), kind)
        for name, kind in RUN_OPTION_FIELDS
    ],
    ("run_experiment", ("scenario", "task", "subtasks", 1, "action", "maxTokens"), INT),
    ("run_experiment", ("scenario", "task", "budget", "attempts"), INT),
    ("run_experiment", ("scenario", "task", "budget", "subtasks"), INT),
    ("run_experiment", ("scenario", "task", "budget", "tokens"), INT),
    ("run_experiment", ("scenario", "task", "budget", "wallClockSeconds"), FLOAT),
    ("run_experiment", ("scenario", "task", "budget", "cost"), FLOAT),
    ("run_experiment", ("scenario", "task", "workspace", "keepBranches"), BOOL),
    ("run_experiment", ("scenario", "task", "workspace", "merge", "timeoutSeconds"), FLOAT),
    ("run_experiment", ("scenario", "strategies", 0, "maxConcurrency"), INT),
    ("run_experiment", ("scenario", "strategies", 0, "retries"), INT),
    ("run_experiment", ("scenario", "strategies", 0, "failureRate"), FLOAT),
    ("run_experiment", ("scenario", "repetitions"), INT),
    ("run_experiment", ("scenario", "seed"), INT),
    ("orchestrate_task", ("task", "steps", 1, "action", "maxTokens"), INT),
    ("analyze_orchestration_potential", ("task", "subtasks", 1, "action", "maxTokens"), INT),
    ("analyze_orchestration_potential", ("strategy", "maxConcurrency"), INT),
    ("list_tasks", ("limit",), INT),
    ("get_task_subtasks", ("limit",), INT),
    ("scale_agents", ("replicas",), INT),
    ("autoscale_agents", ("dryRun",), BOOL),
]
WRONG: dict[str, list[Any]] = {
    INT: ["5", True],
    FLOAT: ["5", "5.5", True],
    BOOL: ["true", "false", 1, 0],
}
CASES = [(tool, path, kind, bad) for tool, path, kind in FIELDS for bad in WRONG[kind]]


def with_value(arguments: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(arguments)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


def refused_fields(tool: str, arguments: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as raised:
        TOOLS[tool].model.model_validate(arguments)
    return [tuple(e["loc"]) for e in raised.value.errors()]


def schema_fields(schema: dict[str, Any], defs: dict[str, Any]) -> set[tuple[str, str]]:
    """(model, property) of every number and boolean property a schema reaches."""
    found: set[tuple[str, str]] = set()
    for name, definition in [("(arguments)", schema), *defs.items()]:
        for prop, spec in definition.get("properties", {}).items():
            types = {spec.get("type")} | {o.get("type") for o in spec.get("anyOf", [])}
            if types & {INT, FLOAT, BOOL}:
                found.add((name, prop))
    return found


def test_the_bases_are_valid_and_every_number_and_boolean_field_is_listed() -> None:
    for tool, arguments in BASES.items():
        TOOLS[tool].model.model_validate(arguments)
    listed = {(tool, path[-1]) for tool, path, _ in FIELDS}
    for tool in TOOLS.values():
        schema = tool.model.model_json_schema(by_alias=True)
        for _, prop in schema_fields(schema, schema.get("$defs", {})):
            assert (tool.name, prop) in listed, (tool.name, prop)


@pytest.mark.parametrize(
    ("tool", "path", "kind", "bad"),
    CASES,
    ids=[f"{t}:{'.'.join(map(str, p))}={b!r}" for t, p, _, b in CASES],
)
def test_a_number_or_boolean_of_another_json_type_is_refused_naming_the_field(
    tool: str, path: tuple[Any, ...], kind: str, bad: Any
) -> None:
    fields = refused_fields(tool, with_value(BASES[tool], path, bad))
    # A field inside an action is named with the action's kind too.
    tagged = [(*path[:-2], "shell", *path[-2:]), (*path[:-1], "llm", path[-1])]
    assert fields == [path] or (len(fields) == 1 and fields[0] in tagged), fields


@pytest.mark.parametrize(("tool", "path", "kind"), [f for f in FIELDS if f[2] == FLOAT])
def test_an_integer_is_a_number(tool: str, path: tuple[Any, ...], kind: str) -> None:
    whole = 1 if path[-1] == "failureRate" else 7  # a chance: 0 to 1
    TOOLS[tool].model.model_validate(with_value(BASES[tool], path, whole))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("tool", "path", "kind"), [f for f in FIELDS if f[2] == FLOAT])
def test_nan_and_infinities_are_refused_as_not_finite(
    tool: str, path: tuple[Any, ...], kind: str, bad: float
) -> None:
    with pytest.raises(ValidationError) as raised:
        TOOLS[tool].model.model_validate(with_value(BASES[tool], path, bad))
    assert [e["msg"] for e in raised.value.errors()] == ["Input should be a finite number"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("strategy", "maxConcurrency"), 10**30),
        (("timeoutSeconds",), 1e308),
        (("task", "steps", 0, "retries"), -(10**30)),
    ],
)
def test_huge_numbers_are_refused_by_their_bounds(path: tuple[Any, ...], value: Any) -> None:
    assert refused_fields("orchestrate_task", with_value(ORCHESTRATE, path, value)) == [path]


def test_enums_and_timestamps_keep_their_string_forms() -> None:
    TOOLS["list_tasks"].model.model_validate({"status": "loop_blocked"})
    spec = TaskSpec.model_validate(ORCHESTRATE["task"])
    assert spec.priority == "high" and spec.deadline is not None
    assert spec.deadline.year == 2030


def test_a_stored_spec_validates_again_as_it_was_stored() -> None:
    # A resumed task's spec comes back from the store as its JSON dump.
    spec = TaskSpec.model_validate(ORCHESTRATE["task"])
    assert TaskSpec.model_validate(spec.model_dump(mode="json", by_alias=True)) == spec
