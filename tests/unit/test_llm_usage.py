"""What llm calls cost and use: prices from llm.yaml, a task's usage, and its trip through a
worker's report."""

from __future__ import annotations

import pytest

from reynolds.core.pricing import Usage, cost_of, prices_from
from reynolds.errors import InvalidInput
from reynolds.services.actions import JobResult
from reynolds.services.ports import ActionResult


def test_a_call_costs_its_tokens_at_the_models_price_per_million() -> None:
    prices = prices_from({"prices": {"m": {"prompt": 0.15, "completion": 0.6}}}, "llm.yaml")

    assert cost_of(prices, "m", 1_000_000, 500_000) == pytest.approx(0.45)
    assert cost_of(prices, "other", 1000, 1000) is None


def test_an_empty_file_has_no_prices_and_a_bad_price_is_named() -> None:
    assert prices_from(None, "llm.yaml") == {}
    with pytest.raises(InvalidInput, match=r"llm.yaml: prices.m.prompt"):
        prices_from({"prices": {"m": {"prompt": -1, "completion": 0}}}, "llm.yaml")


def test_a_tasks_usage_adds_up_its_calls() -> None:
    usage = Usage().add(10, 5, 0.25).add(3, None, None)

    assert usage.view() == {
        "tokens": {"prompt": 13, "completion": 5, "total": 18, "calls": 2},
        "cost": 0.25,
    }


def test_tokens_and_cost_come_back_from_a_worker() -> None:
    result = ActionResult(True, exit_code=0, output="hi", prompt_tokens=7, completion_tokens=2)
    result.cost = 0.5

    back = JobResult.model_validate(JobResult.of(result).model_dump(by_alias=True)).to_result()

    assert (back.prompt_tokens, back.completion_tokens, back.cost) == (7, 2, 0.5)
    assert back.tokens == 9


def test_a_resumed_task_adds_up_what_its_subtasks_kept() -> None:
    kept = [{"usage": Usage().add(10, 5, 0.25).detail()}, None, {"failureClass": "timeout"}]

    usage = Usage.from_details([*kept, {"usage": Usage().add(1, 1, None).detail()}])

    assert usage == Usage(calls=2, prompt_tokens=11, completion_tokens=6, cost=0.25)
