"""What llm calls cost: prices per million tokens, by model, from `config/llm.yaml`.

    prices:
      gpt-4o-mini: {prompt: 0.15, completion: 0.60}

A model without a price costs nothing as far as budgets go; its tokens still count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError

from reynolds.core.models import WireModel, format_validation_errors
from reynolds.errors import InvalidInput

PER_TOKENS = 1_000_000


class Price(WireModel):
    """The price of a million prompt tokens and of a million completion tokens."""

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class LlmConfig(WireModel):
    prices: dict[str, Price] = Field(default_factory=dict)


def prices_from(data: Any, source: str) -> dict[str, Price]:
    """The prices in a parsed `llm.yaml` (None: an empty file); InvalidInput naming the field."""
    try:
        return LlmConfig.model_validate(data or {}).prices
    except ValidationError as exc:
        first = format_validation_errors(exc.errors())[0]
        raise InvalidInput(f"{source}: {first['field']}: {first['reason']}") from exc


def cost_of(
    prices: Mapping[str, Price], model: str, prompt_tokens: int, completion_tokens: int
) -> float | None:
    """What a call to `model` cost; None when `model` has no price."""
    price = prices.get(model)
    if price is None:
        return None
    return (prompt_tokens * price.prompt + completion_tokens * price.completion) / PER_TOKENS


@dataclass(frozen=True, slots=True)
class Usage:
    """What a task's llm calls used so far."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(
        self, prompt_tokens: int | None, completion_tokens: int | None, cost: float | None
    ) -> Usage:
        return Usage(
            self.calls + 1,
            self.prompt_tokens + (prompt_tokens or 0),
            self.completion_tokens + (completion_tokens or 0),
            self.cost + (cost or 0.0),
        )

    def view(self) -> dict[str, Any]:
        """`tokens` and `cost` for a task's metrics."""
        return {
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
                "calls": self.calls,
            },
            "cost": round(self.cost, 6),
        }

    def detail(self) -> dict[str, Any]:
        """As a subtask's stored detail keeps it (read back by `from_details` on resume)."""
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "cost": self.cost,
            "calls": self.calls,
        }

    @classmethod
    def from_details(cls, details: Iterable[Any]) -> Usage:
        """The sum of the `usage` kept in subtasks' details (what a stopped server had spent)."""
        total = cls()
        for detail in details:
            usage = detail.get("usage") if isinstance(detail, dict) else None
            if not isinstance(usage, dict):
                continue
            total = Usage(
                total.calls + int(usage.get("calls") or 0),
                total.prompt_tokens + int(usage.get("promptTokens") or 0),
                total.completion_tokens + int(usage.get("completionTokens") or 0),
                total.cost + float(usage.get("cost") or 0.0),
            )
        return total
