"""Every string a tool receives, at any depth and in keys too, must be text that a system call
and a database can take: no NUL. A refusal names the field."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from reynolds.core.models import TaskSpec
from reynolds.services.tools import TOOLS

NUL_REASON = "must not contain NUL (\\u0000)"

SHELL = {
    "kind": "shell",
    "argv": ["echo", "{component}"],
    "cwd": "sub",
    "env": {"GREETING": "hello"},
}
PYTHON = {"kind": "python", "callable": "pkg.mod:run", "kwargs": {"deep": {"key": ["v"]}}}
HTTP = {
    "kind": "http",
    "method": "POST",
    "url": "http://127.0.0.1/x",
    "json": {"body": {"k": "v"}},
    "headers": {"X-Name": "v"},
}
MCP = {"kind": "mcp", "server": "srv", "tool": "t", "arguments": {"path": "{component}"}}
LLM = {"kind": "llm", "prompt": "say hi", "model": "m"}

# One call of each tool with a string in every place its arguments can hold one.
CALLS: dict[str, dict[str, Any]] = {
    "orchestrate_task": {
        "task": {
            "type": "migration",
            "description": "all of it",
            "components": ["alpha"],
            "priority": "high",
            "deadline": "2030-01-01T00:00:00Z",
            "steps": [
                {"name": "a", "agent": "code", "description": "first", "action": SHELL},
                {"name": "b", "after": ["a"], "action": PYTHON},
            ],
            "decompose": "patterns",
        },
        "strategy": {"approach": "direct", "maxConcurrency": 2, "selection": "weighted"},
    },
    "analyze_orchestration_potential": {
        "task": {
            "type": "build",
            "subtasks": [
                {"id": "h", "component": "web", "action": HTTP},
                {"id": "m", "dependsOn": ["h"], "action": MCP},
                {"id": "l", "action": LLM},
            ],
        }
    },
    "get_task_status": {"taskId": "0123abcd"},
    "get_task_subtasks": {"taskId": "0123abcd", "cursor": "500", "limit": 100, "status": "failed"},
    "cancel_task": {"taskId": "0123abcd"},
    "list_tasks": {"status": "running"},
    "get_agent_status": {"agentType": "devops"},
    "scale_agents": {"agentType": "devops", "replicas": 2},
    "autoscale_agents": {},
    "get_reynolds_wisdom": {"situation": "stuck", "context": {"notes": ["n"]}},
    "run_experiment": {
        "scenario": {
            "name": "s",
            "task": {
                "type": "t",
                "steps": [{"name": "x", "action": {"kind": "shell", "argv": ["true"]}}],
            },
            "strategies": [{"name": "a"}],
        }
    },
}


def text_places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """(path, is_key) of every string in `value`: values, and the keys of every object."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), True
            yield from text_places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from text_places(item, (*path, i))


def with_nul_at(arguments: dict[str, Any], path: tuple[Any, ...], is_key: bool) -> Any:
    poisoned = copy.deepcopy(arguments)
    parent = poisoned
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if is_key:
        parent[f"{last}\x00"] = parent.pop(last)
    else:
        parent[last] = f"{parent[last]}\x00tail"
    return poisoned


def refusal_fields(name: str, arguments: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as raised:
        TOOLS[name].model.model_validate(arguments)
    return {tuple(e["loc"]): e["msg"] for e in raised.value.errors()}


PLACES = [
    (name, path, is_key)
    for name, arguments in CALLS.items()
    for path, is_key in text_places(arguments)
]


def test_the_example_calls_are_valid_and_cover_every_tool() -> None:
    assert set(CALLS) == set(TOOLS)
    for name, arguments in CALLS.items():
        TOOLS[name].model.model_validate(arguments)


@pytest.mark.parametrize(
    ("name", "path", "is_key"),
    PLACES,
    ids=[f"{n}:{'.'.join(map(str, p))}{'(key)' if k else ''}" for n, p, k in PLACES],
)
def test_nul_anywhere_in_any_tools_arguments_is_refused_naming_that_field(
    name: str, path: tuple[Any, ...], is_key: bool
) -> None:
    fields = refusal_fields(name, with_nul_at(CALLS[name], path, is_key))
    where = (*path[:-1], f"{path[-1]}\\u0000") if is_key else path
    assert fields == {where: NUL_REASON}


def test_a_task_spec_validated_on_its_own_refuses_nul_too() -> None:
    with pytest.raises(ValidationError) as raised:
        TaskSpec.model_validate({"type": "t\x00x", "components": ["a"]})
    assert [(e["loc"], e["msg"]) for e in raised.value.errors()] == [(("type",), NUL_REASON)]


def test_every_nul_is_named_not_only_the_first() -> None:
    arguments = {
        "task": {
            "type": "t\x00",
            "subtasks": [{"id": "a", "component": "\x00", "action": {**SHELL, "cwd": "\x00"}}],
        }
    }
    assert set(refusal_fields("orchestrate_task", arguments)) == {
        ("task", "type"),
        ("task", "subtasks", 0, "component"),
        ("task", "subtasks", 0, "action", "cwd"),
    }
