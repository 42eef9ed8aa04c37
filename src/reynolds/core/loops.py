"""Loop detection: decisions about work that makes no progress, returned as values.

Each detector counts *evidence*: repetitions that a coincidence would hardly produce. It turns
them into the confidence that the next attempt repeats too:

    confidence = 1 − ρ ** evidence

where ρ is the detector's chance that one repetition was a coincidence (`CHANCE`). Work is
stopped when the confidence reaches the configured level (REYNOLDS_LOOP_CONFIDENCE, 0.999 by
default). With ρ = 0.1 for identical failures, the third identical failing outcome of the same
call gives 1 − 0.1³ = 0.999 and stops the subtask; two give 0.99 and never do.

The detectors:
- `repeated`: the same call failed the same way, again and again (the identical fingerprint).
- `oscillation`: the outcomes alternate with a period of 2 or 3 (A, B, A, B …) while failing.
- `no_progress`: failing attempts whose output stopped changing, though their errors differ.
- `retry_storm`: across a task, retries keep failing (the balance over a sliding window).
- `resubmission`: the same task submitted again after ending the same failed way.
- `runaway_depth`: tasks started by tasks' actions, nested deeper and deeper (an agent whose
  step orchestrates a task whose step orchestrates another …): each generation past
  DEPTH_FREE is a unit of evidence.
- `runaway_fanout`: one subtask's action starting task after task: each one past FANOUT_FREE
  is a unit of evidence.

A flaky step whose output changes from attempt to attempt, then succeeds, gives none of them
evidence. All of it is pure: the history goes in, a `LoopVerdict` (or None) comes out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reynolds.core.fingerprints import Outcome

DEFAULT_CONFIDENCE = 0.999
# ρ per detector: the chance that one more repetition of the pattern is a coincidence.
CHANCE = {
    "repeated": 0.1,
    "oscillation": 0.1,
    "no_progress": 0.25,
    "retry_storm": 0.1,
    "resubmission": 0.1,
    "runaway_depth": 0.1,
    "runaway_fanout": 0.25,
}
# The detectors judging one subtask's failures (`first_loop`); the others judge a task or
# its resubmissions.
SUBTASK_DETECTORS = ("repeated", "oscillation", "no_progress")
# Those the scheduler runs: the subtask detectors, retry storms per task, and resubmissions
# at submit.
ACTIVE_DETECTORS = (
    *SUBTASK_DETECTORS,
    "retry_storm",
    "resubmission",
    "runaway_depth",
    "runaway_fanout",
)
# Retry storms: the window of a task's latest retries, and how many failed retries (net of
# succeeded ones) make one unit of evidence.
STORM_WINDOW = 20
STORM_UNIT = 5
# Runaway orchestration: the generations of nested tasks, and the tasks one subtask may start,
# that are no evidence at all.
DEPTH_FREE = 2
FANOUT_FREE = 5
# Float arithmetic: 1 − 0.1³ is 0.9989999…; the confidence levels compared are whole choices.
_TOLERANCE = 1e-9


def confidence(detector: str, evidence: int) -> float:
    """1 − ρ ** evidence for the detector (0 without evidence)."""
    if evidence <= 0:
        return 0.0
    return 1.0 - CHANCE[detector] ** evidence


def evidence_needed(detector: str, level: float) -> int:
    """The least evidence at which `detector` reaches `level` (for documentation and tests)."""
    level = min(level, 1.0 - 1e-12)
    return max(1, math.ceil(math.log(1.0 - level) / math.log(CHANCE[detector]) - _TOLERANCE))


def reaches(value: float, level: float) -> bool:
    return value >= level - _TOLERANCE


@dataclass(frozen=True, slots=True)
class LoopVerdict:
    """Work to stop: which detector, how sure, and what it saw."""

    detector: str
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """As a subtask's `loop` detail and the loop-prevention resource show it."""
        return {
            "detector": self.detector,
            "confidence": round(self.confidence, 6),
            "evidence": self.evidence,
        }


def _verdict(detector: str, evidence: int, level: float, **seen: Any) -> LoopVerdict | None:
    value = confidence(detector, evidence)
    if not reaches(value, level):
        return None
    return LoopVerdict(detector, value, {"count": evidence, **seen})


def repeated(history: Sequence[Outcome], level: float) -> LoopVerdict | None:
    """The latest failing outcomes of one call, identical: each one is a unit of evidence."""
    if not history or history[-1].ok:
        return None
    last = history[-1].fingerprint
    count = 0
    for past in reversed(history):
        if past.ok or past.fingerprint != last:
            break
        count += 1
    return _verdict("repeated", count, level, fingerprint=last)


def oscillation(history: Sequence[Outcome], level: float) -> LoopVerdict | None:
    """Failing outcomes that cycle with a period of 2 or 3 distinct fingerprints: every
    attempt that repeats the one a period before it is a unit of evidence."""
    for period in (2, 3):
        count = 0
        for i in range(len(history) - 1, period - 1, -1):
            now, before = history[i], history[i - period]
            if now.ok or before.ok or now.fingerprint != before.fingerprint:
                break
            count += 1
        cycle = [o.fingerprint for o in history[-period:]] if len(history) >= period else []
        if count and len(set(cycle)) == period:
            found = _verdict("oscillation", count, level, period=period, cycle=cycle)
            if found is not None:
                return found
    return None


def no_progress(history: Sequence[Outcome], level: float) -> LoopVerdict | None:
    """Failing attempts with the same, non-empty output though their outcomes differ: the
    work got no further. The first of them is the baseline; each one after is evidence."""
    if not history or history[-1].ok or not history[-1].output:
        return None
    output = history[-1].output
    same = 0
    for past in reversed(history):
        if past.ok or past.output != output:
            break
        same += 1
    distinct = len({o.fingerprint for o in history[-same:]})
    if distinct < 2:
        return None  # all identical: `repeated` speaks for those
    return _verdict("no_progress", same - 1, level, output=output, attempts=same)


def first_loop(history: Sequence[Outcome], level: float) -> LoopVerdict | None:
    """The verdict on one call's attempts so far, or None to carry on."""
    return repeated(history, level) or oscillation(history, level) or no_progress(history, level)


def retry_storm(retry_outcomes: Sequence[bool], level: float) -> LoopVerdict | None:
    """A task's latest retries (True: it succeeded), oldest first: when they keep failing,
    every STORM_UNIT failed retries more than succeeded ones, within the latest STORM_WINDOW,
    is a unit of evidence."""
    window = retry_outcomes[-STORM_WINDOW:]
    failed = sum(1 for ok in window if not ok)
    balance = failed - (len(window) - failed)
    return _verdict(
        "retry_storm", balance // STORM_UNIT, level, failedRetries=failed, window=len(window)
    )


def resubmission(
    previous: Sequence[str | None], level: float, *, ended_failed: Sequence[bool]
) -> LoopVerdict | None:
    """Earlier runs of the same task (its input's fingerprint), newest last: their outcome
    fingerprints and whether each failed. The latest runs that failed the same way are the
    evidence that running it again ends the same way."""
    if not previous or not ended_failed or not ended_failed[-1] or previous[-1] is None:
        return None
    last = previous[-1]
    count = 0
    for print_, failed in zip(reversed(previous), reversed(ended_failed), strict=True):
        if not failed or print_ != last:
            break
        count += 1
    return _verdict("resubmission", count, level, fingerprint=last)


def runaway_depth(depth: int, level: float) -> LoopVerdict | None:
    """A task `depth` generations below a task submitted by hand (0: by hand)."""
    return _verdict("runaway_depth", depth - DEPTH_FREE, level, depth=depth)


def runaway_fanout(children: int, level: float) -> LoopVerdict | None:
    """`children` tasks (this one included) started by one subtask's action."""
    return _verdict("runaway_fanout", children - FANOUT_FREE, level, children=children)
