"""`get_reynolds_wisdom` (pure): what a situation says — how many independent items, words
about sequential work, deadlines, failures, loops, coordination, rate limits — and the
practical advice that follows, with a line of charm when the personality is on. The same
situation and state give the same answer: nothing here is random."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from reynolds.core.models import InputModel

# A count of things: "17 independent tools", "9 services", "twelve repos".
_WORDS_FOR_NUMBERS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "fifty": 50,
    "hundred": 100,
}  # fmt: skip
_COUNT = re.compile(
    r"\b(\d{1,6}|" + "|".join(_WORDS_FOR_NUMBERS) + r")\s+(?:independent\s+|separate\s+|"
    r"different\s+|similar\s+|small\s+|)([a-z][a-z-]{2,30})",
    re.IGNORECASE,
)
_SIGNALS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "sequential": r"\b(sequential(ly)?|one (by|after|at a) (one|time)|in order|serial(ly)?)\b",
        "independent": r"\b(independent|parallel|at once|concurrent(ly)?|side by side)\b",
        "deadline": r"\b(deadline|urgent|asap|by (monday|tuesday|wednesday|thursday|friday|"
        r"tomorrow|tonight|eod|end of day)|hurry|in \d+ (minutes|hours))\b",
        "failing": r"\b(fail(s|ed|ing)?|error(s)?|broken|flaky|crash(es|ed|ing)?)\b",
        "loop": r"\b(loop(s|ing)?|keeps? (failing|retrying|happening)|again and again|"
        r"same (step|error|call|thing)|over and over|stuck)\b",
        "coordination": r"\b(coordinat\w*|depend(s|ency|encies|ent)?|conflict(s|ing)?|"
        r"merge(s|d)?|same (file|repo|repository|branch)|step on each other)\b",
        "rate_limit": r"\b(429|rate[- ]limit(s|ed|ing)?|throttl\w*|quota|too many requests)\b",
    }.items()
}
_SKIP_NOUNS = frozenset({"seconds", "minutes", "hours", "days", "times", "percent", "steps"})


class WisdomRequest(InputModel):
    situation: str = Field(min_length=1, max_length=20_000)
    context: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """What a situation says."""

    items: int | None  # independent items counted, the largest count named
    noun: str | None
    signals: frozenset[str] = field(default_factory=frozenset)


def read(situation: str, context: Mapping[str, Any] | None = None) -> Reading:
    """Count the items and find the signals in the situation (and the context's text)."""
    text = " ".join([situation, *_context_text(context)])
    counts = []
    for number, noun in _COUNT.findall(text):
        if noun.lower() in _SKIP_NOUNS:
            continue
        value = int(number) if number.isdigit() else _WORDS_FOR_NUMBERS[number.lower()]
        counts.append((value, noun.lower()))
    items, noun = max(counts) if counts else (None, None)
    signals = frozenset(name for name, pattern in _SIGNALS.items() if pattern.search(text))
    return Reading(items, noun, signals)


def _context_text(context: Mapping[str, Any] | None) -> list[str]:
    out: list[str] = []
    for value in (context or {}).values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return out


def advice(reading: Reading, suggested: Mapping[str, Any] | None) -> list[str]:
    """Practical advice, most important first."""
    out: list[str] = []
    signals = reading.signals
    if reading.items and reading.items > 1 and suggested is not None:
        out.append(
            f"Run the {reading.items} {reading.noun or 'items'} as one task with a component "
            f"each, strategy {suggested['approach']} at maxConcurrency "
            f"{suggested['maxConcurrency']}: about {suggested['expectedSpeedup']:.1f}× faster "
            "than one at a time on the pools as they stand."
        )
        out.append(
            "Ask analyze_orchestration_potential first to see the plan, or run_experiment to "
            "compare concurrencies before anything runs."
        )
    if "sequential" in signals and "independent" not in signals:
        out.append(
            "Keep `after` links only where a step truly needs another's output; every other "
            "link costs you parallelism."
        )
    if "loop" in signals or ("failing" in signals and "loop" not in signals):
        out.append(
            "A step that keeps failing the same way is a loop: loop prevention stops it when "
            "the same fingerprint repeats (see reynolds://loop-prevention and each subtask's "
            "`loop` evidence); fix the cause instead of raising `retries`."
        )
        out.append(
            "If the failures come from one downstream, its circuit breaker opens after "
            "REYNOLDS_BREAKER_FAILURES in a row and lets one probe through after the cool-down "
            "(get_agent_status shows `breaker` per pool and downstream)."
        )
        out.append("`reynolds patterns` shows what keeps failing, by action and pool.")
    if "rate_limit" in signals:
        out.append(
            "Rate limits: adaptive concurrency lowers a downstream's concurrency on 429/503 and "
            "honours Retry-After; set a modest maxConcurrency and let it find the level."
        )
    if "deadline" in signals:
        out.append(
            "A deadline: give the task `deadline` (or a wall-clock budget) so work is ordered "
            "by it and stopped when it passes, and priority `high` or `critical`."
        )
    if "coordination" in signals:
        out.append(
            "Agents editing one repository: give the task a `workspace` so each subtask works "
            "in its own git worktree and branch, merged at the end with a check."
        )
    if not out:
        out.append(
            'Describe the work as items and steps ("17 tools, migrate then check"): '
            "independent items run side by side, and the plan says how much that buys."
        )
    return out


def headline(reading: Reading, suggested: Mapping[str, Any] | None) -> str:
    """The one-line wisdom."""
    signals = reading.signals
    if "loop" in signals:
        return "Doing the same thing again and expecting a different result is a loop, not a plan."
    if reading.items and reading.items > 1 and suggested is not None:
        return (
            f"{reading.items} independent {reading.noun or 'items'} are {reading.items} lanes, "
            "not one queue."
        )
    if "failing" in signals:
        return "Failures are information: read them once, fix the cause, then run again."
    if "rate_limit" in signals:
        return "When the downstream says slow down, the fastest thing is to listen."
    if "deadline" in signals:
        return "A deadline is a budget: spend it on the critical path first."
    if "coordination" in signals:
        return "Parallel work needs separate desks: one worktree each, one merge at the end."
    return "Split the work where it is independent, and keep the links that matter."


_CHARM = (
    "Maximum effort, minimum waiting.",
    "Sequential execution called; I let it go to voicemail.",
    "I don't do queues. I do lanes.",
    "Fourth-wall note: this advice was computed, not improvised.",
    "Parallel lanes open, coffee optional.",
)


def charm(situation: str) -> str:
    """A line of charm, the same for the same situation."""
    digest = hashlib.sha256(situation.encode("utf-8", "surrogatepass")).digest()
    return _CHARM[digest[0] % len(_CHARM)]


PERSONALITY = {
    "name": "Reynolds",
    "voice": "Direct, practical and warm; a joke only after the useful part, never instead.",
    "traits": [
        "says what to do first, why second",
        "counts the independent work before anything else",
        "treats repeated failure as a loop to stop, not a reason to retry",
        "plain with numbers: speedups are simulated or measured, never guessed",
    ],
    "charmLevels": {"0": "personality off: plain sentences", "1-3": "one light line per answer"},
    "examples": list(_CHARM),
}
