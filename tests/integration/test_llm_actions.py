"""llm actions on the scheduler: against the local model server (tokens, cost, budgets) and a
scripted endpoint on a real socket (timeouts, 503s and their retries)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.llm_server import LlmServer
from tests.helpers.llm_stub import Answer, LlmStub, serve_stub
from tests.helpers.polling import eventually
from tests.helpers.scheduler import FakeClock, Scheduler, by_id, scheduler, until

from reynolds.adapters.actions.llm import LlmRunner
from reynolds.adapters.store.memory import MemoryStore
from reynolds.bootstrap import llm_runner
from reynolds.core.pools import PoolSet
from reynolds.core.pricing import Price
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio

PRICES = {
    "reynolds-tiny": Price(prompt=1.0, completion=2.0),
    "stub": Price(prompt=10, completion=20),
}


@pytest.fixture
def stub() -> Iterator[LlmStub]:
    yield from serve_stub(LlmStub())


@pytest.fixture
async def on_model(llm_server: LlmServer) -> AsyncIterator[Scheduler]:
    runner = LlmRunner(base_url=llm_server.base_url, model=llm_server.model, prices=PRICES)
    async with scheduler(llm=runner) as s:
        yield s
    await runner.aclose()


@pytest.fixture
async def on_stub(stub: LlmStub) -> AsyncIterator[Scheduler]:
    runner = LlmRunner(base_url=stub.base_url, model="stub", api_key="k-secret", prices=PRICES)
    async with scheduler(llm=runner) as s:
        yield s
    await runner.aclose()


def attempt_rows(store: MemoryStore, task_id: str) -> list[dict[str, Any]]:
    rows = store._tables.rows["attempts"].values()  # the committed rows, as a database keeps them
    found = [r for r in rows if r["task_id"] == task_id]
    return sorted(found, key=lambda r: (r["subtask_id"], r["attempt"]))


def llm(prompt: str, sid: str = "ask", *depends_on: str, **options: Any) -> dict[str, Any]:
    action = {"kind": "llm", "prompt": prompt, "maxTokens": 8}
    return {"id": sid, "action": action, "dependsOn": list(depends_on), **options}


async def test_an_llm_action_answers_from_the_local_model_with_its_tokens_counted(
    on_model: Scheduler,
) -> None:
    task = {"type": "ask", "subtasks": [llm("Say hello to {component}", component="alpha")]}

    result = await on_model.run(task)

    assert result["status"] == "succeeded", result
    await on_model.store.flush()
    (row,) = attempt_rows(on_model.store, result["taskId"])
    assert row["prompt_tokens"] > 0
    assert 1 <= row["completion_tokens"] <= 8
    assert row["cost"] == pytest.approx(
        (row["prompt_tokens"] * 1.0 + row["completion_tokens"] * 2.0) / 1_000_000
    )
    assert result["subtasks"][0]["usage"] == {
        "promptTokens": row["prompt_tokens"],
        "completionTokens": row["completion_tokens"],
        "cost": row["cost"],
        "calls": 1,
    }
    tokens = result["metrics"]["tokens"]
    assert tokens["prompt"] == row["prompt_tokens"]
    assert tokens["completion"] == row["completion_tokens"]
    assert tokens["total"] == row["prompt_tokens"] + row["completion_tokens"]
    assert result["metrics"]["cost"] == pytest.approx(row["cost"], abs=1e-6)


async def test_a_token_budget_stops_further_work_once_spent(on_model: Scheduler) -> None:
    task = {
        "type": "ask",
        "budget": {"tokens": 1},
        "subtasks": [llm("first"), llm("second", "then", "ask"), llm("third", "last", "then")],
    }

    result = await on_model.run(task)

    subs = by_id(result)
    assert result["status"] == "failed"
    assert subs["ask"]["status"] == "succeeded"
    assert subs["then"]["status"] == "skipped"
    assert subs["last"]["status"] == "skipped"
    assert "tokens budget" in subs["then"]["error"]
    assert result["metrics"]["budget"]["exceeded"] == "tokens"
    assert result["metrics"]["budget"]["used"]["tokens"] == result["metrics"]["tokens"]["total"]


async def test_placeholders_are_filled_in_the_prompt_and_the_system_text(
    on_stub: Scheduler, stub: LlmStub
) -> None:
    action = {
        "kind": "llm",
        "prompt": "Port {component} in {taskType} (attempt {attempt})",
        "system": "You work on {subtaskId}",
        "responseFormat": {"type": "json_object"},
    }
    task = {"type": "port", "subtasks": [{"id": "p", "component": "Tool", "action": action}]}

    result = await on_stub.run(task)

    assert result["status"] == "succeeded", result
    (request,) = stub.requests
    assert request["model"] == "stub"
    assert request["messages"] == [
        {"role": "system", "content": "You work on p"},
        {"role": "user", "content": "Port Tool in port (attempt 1)"},
    ]
    assert request["response_format"] == {"type": "json_object"}
    assert result["subtasks"][0]["output"] == "ok"


async def test_503_answers_fail_with_the_status_and_are_retried_until_an_answer(
    on_stub: Scheduler, stub: LlmStub
) -> None:
    busy = Answer(503, "busy", headers={"Retry-After": "0"})
    stub.answers = [busy, busy, Answer(content="done")]
    task = {"type": "ask", "subtasks": [llm("hello", retries=2)]}

    result = await on_stub.run(task)

    assert result["status"] == "succeeded", result
    assert len(stub.requests) == 3
    await on_stub.store.flush()
    rows = attempt_rows(on_stub.store, result["taskId"])
    assert [(r["status"], r["exit_code"]) for r in rows] == [
        ("failed", 503),
        ("failed", 503),
        ("succeeded", 0),
    ]
    assert rows[0]["prompt_tokens"] is None
    assert result["metrics"]["tokens"]["calls"] == 1


async def test_an_answer_later_than_the_timeout_fails_the_attempt(
    on_stub: Scheduler, stub: LlmStub
) -> None:
    stub.answers = [Answer(hold=True)]
    task = {"type": "ask", "subtasks": [llm("hello", timeoutSeconds=0.5)]}

    result = await on_stub.run(task)

    sub = result["subtasks"][0]
    assert sub["status"] == "failed"
    assert "no answer from the llm endpoint within 0.5 s" in sub["error"]
    await on_stub.store.flush()
    assert attempt_rows(on_stub.store, result["taskId"])[0]["reason"] == "timeout"


async def test_without_an_endpoint_an_llm_action_fails_saying_what_to_set() -> None:
    runner = LlmRunner(base_url=None)
    async with scheduler(llm=runner) as s:
        result = await s.run({"type": "ask", "subtasks": [llm("hello", retries=3)]})
    sub = result["subtasks"][0]
    assert sub["status"] == "failed"
    assert sub["attempts"] == 1
    assert "REYNOLDS_LLM_BASE_URL" in sub["error"]


async def test_a_resumed_task_keeps_the_tokens_its_stopped_server_spent(stub: LlmStub) -> None:
    clock = FakeClock()
    store = MemoryStore(batch_interval_s=0.0, clock=clock)
    shell = {"kind": "shell", "argv": ["echo", "wait"]}
    subtasks = [llm("hello"), {"id": "wait", "action": shell}, llm("more", "more", "ask", "wait")]
    task = {"type": "ask", "budget": {"tokens": 5}, "subtasks": subtasks}  # a call is 5 tokens
    runner = LlmRunner(base_url=stub.base_url, model="stub")
    try:
        async with scheduler(store=store, clock=clock, llm=runner) as first:
            first.shell.gates["wait"] = asyncio.Event()
            run = await first.submit(task)
            assert await eventually(lambda: run.subs["ask"].status == "succeeded")
        # Stopped with `wait` running; `ask` had spent the whole budget.
        async with scheduler(store=store, clock=clock, llm=runner) as second:
            assert await second.engine.resume() == [run.id]
            resumed = second.engine.find(run.id)
            assert resumed is not None and await second.engine.wait(resumed, 10)
            result = await second.engine.result(run.id)
    finally:
        store.close()
        await runner.aclose()

    subs = by_id(result)
    assert result["status"] == "failed"
    assert result["metrics"]["budget"]["exceeded"] == "tokens"
    assert result["metrics"]["tokens"]["total"] == 5
    assert second.shell.started == []
    assert subs["more"]["status"] == "skipped"
    assert len(stub.requests) == 1


SEED_TOOLS = [f"Tool{i:02d}" for i in range(17)]


async def test_the_seeds_migration_runs_with_an_llm_executor_and_tokens_per_subtask(
    llm_server: LlmServer,
) -> None:
    """The seed's example, no steps: each pattern subtask's agent is the local model, asked
    its {instruction}; every subtask records what it spent."""
    executor = {"kind": "llm", "prompt": "{instruction}", "maxTokens": 4}
    spec = {"name": "code", "replicas": {"min": 1, "max": 8, "initial": 5}, "executor": executor}
    pools = PoolSet.from_mapping({"pools": {"code": spec}}, source="test")
    runner = LlmRunner(base_url=llm_server.base_url, model=llm_server.model, prices=PRICES)
    task = {
        "type": "migration",
        "description": "Migrate 17 MCP tools from controller pattern to SDK pattern",
        "components": SEED_TOOLS,
    }
    try:
        async with scheduler(pool_set=pools, llm=runner) as s:
            result = await s.run(task, {"maxConcurrency": 5})
            await s.store.flush()
            rows = attempt_rows(s.store, result["taskId"])
    finally:
        await runner.aclose()

    assert result["status"] == "succeeded", result["subtasks"][:2]
    assert result["plan"]["pattern"] == "migration"
    assert len(result["subtasks"]) == 18 and len(rows) == 18
    assert all(row["prompt_tokens"] > 20 for row in rows)  # the instruction, not a bare word
    assert all(sub["usage"]["calls"] == 1 for sub in result["subtasks"])
    assert result["metrics"]["tokens"]["prompt"] == sum(r["prompt_tokens"] for r in rows)


async def test_a_running_task_shows_the_tokens_spent_so_far(on_stub: Scheduler) -> None:
    on_stub.shell.gates = {"wait": asyncio.Event()}
    waiting = {"id": "wait", "action": {"kind": "shell", "argv": ["true"]}}
    run = await on_stub.submit({"type": "t", "subtasks": [llm("Say hi"), waiting]})
    assert await until(lambda: run.subs["ask"].status.finished)

    live = await on_stub.engine.result(run.id)
    assert live["status"] == "running"
    assert live["metrics"]["tokens"]["calls"] == 1 and live["metrics"]["tokens"]["total"] > 0
    on_stub.shell.gates["wait"].set()
    assert await on_stub.engine.wait(run, 10)


async def test_429_answers_are_retried_and_lower_the_endpoints_concurrency(
    on_stub: Scheduler, stub: LlmStub
) -> None:
    stub.answers = [Answer(429, "slow down", headers={"Retry-After": "0"}), Answer(content="ok")]
    task = {"type": "ask", "subtasks": [llm("hello", retries=1)]}

    result = await on_stub.run(task)

    assert result["status"] == "succeeded", result
    await on_stub.store.flush()
    rows = attempt_rows(on_stub.store, result["taskId"])
    assert [(r["status"], r["exit_code"], r["failure_class"]) for r in rows] == [
        ("failed", 429, "resource"),
        ("succeeded", 0, None),
    ]
    # The 429 was heard as overload: a limit was set (and lifted after the success).
    assert "llm:default" in on_stub.metrics.limits


async def test_the_endpoints_key_is_read_from_the_secrets_folder(
    stub: LlmStub, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "llm_api_key.txt").write_text("k-from-file\n")
    settings = Settings(
        home=tmp_path / "home", secrets_dir=secrets, llm_base_url=stub.base_url, llm_model="stub"
    )
    runner = llm_runner(settings)
    stub.answers = [Answer(content="hi")]
    try:
        async with scheduler(llm=runner) as s:
            result = await s.run({"type": "ask", "subtasks": [llm("hello")]})
    finally:
        await runner.aclose()

    assert result["status"] == "succeeded", result
    assert stub.authorizations == ["Bearer k-from-file"]
