"""What says a downstream is overloaded, for adaptive concurrency: an HTTP or llm answer 429
or 503 (with its Retry-After), an MCP server's error naming it, and an executable's exit code
or output pattern that its pool's `overload` rules list. Anything else is no signal — and an
output pattern really lowers the limit on the scheduler."""

from __future__ import annotations

import pytest
from tests.helpers.scheduler import scheduler

from reynolds.core.downstreams import Overload, OverloadRule, overload
from reynolds.core.models import Action, HttpAction, LlmAction, McpAction, PythonAction, ShellAction
from reynolds.core.pools import PoolSet
from reynolds.services.ports import ActionResult

API = HttpAction(kind="http", url="http://api.example/items")
MODEL = LlmAction(kind="llm", prompt="hello")
TRACKER = McpAction(kind="mcp", server="tracker", tool="search")
TOOL = ShellAction(kind="shell", argv=["/usr/local/bin/tool", "sync"])
pytestmark = pytest.mark.anyio
RULES = {"tool": OverloadRule(frozenset({75}), ("rate limit", r"slow down"))}


def signal(action: Action, exit_code: int | None = None, output: str = "", error: str = "",
           retry_after_s: float | None = None) -> Overload | None:  # fmt: skip
    return overload(
        action,
        exit_code=exit_code, output=output, error=error, retry_after_s=retry_after_s,
        rules=RULES,
    )  # fmt: skip


def test_http_and_llm_answers_429_and_503_are_overload_with_their_retry_after() -> None:
    assert signal(API, 429, retry_after_s=7.0) == Overload("HTTP 429", 7.0)
    assert signal(API, 503) == Overload("HTTP 503")
    assert signal(MODEL, 503) == Overload("HTTP 503")
    for other in (400, 404, 500, 502, None):
        assert signal(API, other) is None


def test_an_mcp_error_naming_overload_is_a_signal_and_others_are_not() -> None:
    for error in (
        "rate limit exceeded",
        "Too Many Requests",
        "server at capacity, try again later",
    ):
        found = signal(TRACKER, error=error)
        assert found is not None and found.signal.startswith("MCP error: ")
    assert signal(TRACKER, error="issue 42 not found") is None


def test_an_executables_exit_code_or_output_pattern_from_its_pools_rules() -> None:
    assert signal(TOOL, 75) == Overload("exit code 75")
    assert signal(TOOL, 1, output="sync failed: Rate Limit hit") == Overload(
        "output matches 'rate limit'"
    )
    assert signal(TOOL, 1, error="please slow down") == Overload("output matches 'slow down'")
    assert signal(TOOL, 1, error="3 files failed") is None
    other = ShellAction(kind="shell", argv=["rsync", "rate limit"])  # not in the rules
    assert signal(other, 75, output="rate limit") is None
    assert signal(PythonAction(kind="python", callable="jobs:run"), 75, "rate limit") is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_output_pattern_lowers_the_executables_limit_on_the_scheduler() -> None:
    spec = {"name": "a", "replicas": {"min": 1, "max": 8, "initial": 8},
            "overload": {"tool": {"patterns": ["rate limit"]}}}  # fmt: skip
    busy = ActionResult(False, exit_code=1, output="sync: rate limit, retry later")
    pool_set = PoolSet.from_mapping({"pools": {"a": spec}}, source="test")
    async with scheduler(pool_set=pool_set) as s:
        s.shell.outcomes = {"t0": [busy]}
        steps = [
            {"id": f"t{i}", "retries": 2, "action": {"kind": "shell", "argv": ["tool", f"t{i}"]}}
            for i in range(6)
        ]
        run = await s.submit({"type": "t", "subtasks": steps}, {"maxConcurrency": 6})
        assert await s.engine.wait(run, 5)
    assert run.subs["t0"].detail is not None
    assert run.subs["t0"].detail["overload"] == "output matches 'rate limit'"
    assert "exec:tool" in s.metrics.limits, "no limit was set for the overloaded executable"
    assert s.metrics.loops == []
