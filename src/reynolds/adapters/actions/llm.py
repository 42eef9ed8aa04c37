"""The `llm` action runner: one chat completion from an OpenAI-compatible endpoint.

The answer's text is the action's output. An HTTP error answer fails the attempt with the
status as its exit code (429 and 503 then feed adaptive concurrency), and the subtask's own
`retries` decide what follows: the client's retries are off so that retrying has one source.
Token usage comes from the answer, its cost from the configured prices. The key is handed to
the client and never appears in a result or a log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reynolds.core.downstreams import parse_retry_after
from reynolds.core.models import LlmAction
from reynolds.core.pricing import Price, cost_of
from reynolds.services.ports import ActionContext, ActionResult

if TYPE_CHECKING:  # openai is imported where an endpoint is set: it takes 0.35 s
    import openai

# Local servers ask for no key, the client will not go without one.
NO_KEY = "none"


class LlmRunner:
    """Runs `llm` actions against `base_url`; without one each fails saying what to set."""

    def __init__(
        self,
        *,
        base_url: str | None,
        model: str | None = None,
        api_key: str | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        self.model = model
        self.prices = dict(prices or {})
        self._client: openai.AsyncOpenAI | None = None
        if base_url:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or NO_KEY, max_retries=0)

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def run(self, action: LlmAction, ctx: ActionContext) -> ActionResult:
        """Ask for one completion within the subtask's timeout."""
        model = action.model or self.model
        if self._client is None or model is None:
            missing = "REYNOLDS_LLM_BASE_URL" if self._client is None else "REYNOLDS_LLM_MODEL"
            return ActionResult(
                False,
                reason="not_configured",
                error=f"llm actions need an OpenAI-compatible endpoint and a model: set "
                f"{missing} (a model may also be named in the action)",
            )
        import openai

        try:
            async with asyncio.timeout(ctx.timeout_s):
                completion = await self._client.chat.completions.create(
                    model=model,
                    messages=_messages(action),
                    timeout=ctx.timeout_s,
                    **_options(action),
                )
        except (TimeoutError, openai.APITimeoutError):
            return ActionResult(
                False,
                reason="timeout",
                error=f"no answer from the llm endpoint within {ctx.timeout_s:g} s",
            )
        except openai.APIStatusError as exc:
            return _status_error(exc)
        except openai.APIConnectionError as exc:
            return ActionResult(False, reason="error", error=f"llm endpoint: {exc}")
        except openai.OpenAIError as exc:
            return ActionResult(False, reason="error", error=f"{type(exc).__name__}: {exc}")
        return self._answer(completion, model, ctx.output_cap_bytes)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _answer(self, completion: Any, model: str, cap_bytes: int) -> ActionResult:
        choices = completion.choices or []
        text = (choices[0].message.content or "") if choices else ""
        usage = completion.usage
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        answer = int(getattr(usage, "completion_tokens", 0) or 0)
        data = text.encode()
        truncated = len(data) > cap_bytes
        output = data[:cap_bytes].decode(errors="ignore") if truncated else text
        return ActionResult(
            True,
            exit_code=0,
            output=output,
            output_bytes=len(data),
            truncated=truncated,
            prompt_tokens=prompt,
            completion_tokens=answer,
            cost=cost_of(self.prices, model, prompt, answer),
        )


def _messages(action: LlmAction) -> list[Any]:
    messages: list[dict[str, str]] = []
    if action.system:
        messages.append({"role": "system", "content": action.system})
    messages.append({"role": "user", "content": action.prompt})
    return messages


def _options(action: LlmAction) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if action.max_tokens is not None:
        options["max_tokens"] = action.max_tokens
    if action.response_format is not None:
        options["response_format"] = action.response_format
    return options


def _status_error(exc: openai.APIStatusError) -> ActionResult:
    status = exc.status_code
    detail = exc.message[:2000]
    return ActionResult(
        False,
        exit_code=status,
        error=f"HTTP {status} from the llm endpoint: {detail}",
        retry_after_s=parse_retry_after(exc.response.headers.get("retry-after"), datetime.now(UTC)),
    )
