"""Loop detection on histories of outcomes: what stops, at which confidence, and what never does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reynolds.core import loops
from reynolds.core.fingerprints import Outcome, normalise, outcome, signature

LEVEL = loops.DEFAULT_CONFIDENCE


def failed(text: str, output: str = "") -> Outcome:
    return outcome(False, 1, output, text, "exit")


def test_the_third_identical_failure_stops_a_call_and_two_never_do() -> None:
    same = [failed("connection refused") for _ in range(3)]
    assert loops.first_loop(same[:1], LEVEL) is None
    assert loops.first_loop(same[:2], LEVEL) is None
    verdict = loops.first_loop(same, LEVEL)
    assert verdict is not None and verdict.detector == "repeated"
    assert verdict.confidence >= LEVEL - 1e-9
    assert verdict.evidence == {"count": 3, "fingerprint": same[0].fingerprint}


def test_confidence_rises_with_each_repetition_by_the_written_formula() -> None:
    values = [loops.confidence("repeated", k) for k in range(5)]
    assert values == [0.0, 0.9, 1 - 0.1**2, 1 - 0.1**3, 1 - 0.1**4]
    assert values == sorted(values)
    assert loops.evidence_needed("repeated", 0.999) == 3
    assert loops.evidence_needed("repeated", 0.99) == 2
    assert loops.evidence_needed("no_progress", 0.999) == 5


def test_a_lower_level_stops_sooner() -> None:
    two = [failed("boom"), failed("boom")]
    assert loops.first_loop(two, 0.99) is not None
    assert loops.first_loop(two, 0.999) is None


def test_what_varies_between_identical_failures_is_masked_and_small_numbers_kept() -> None:
    a = failed(
        "2026-12-04T10:00:01Z error in /tmp/tmpab12cd/x.py id 3f2a9c1e7b pid 48211 0x7ffd1234"
    )
    b = failed(
        "2026-12-04T11:22:33Z error in /tmp/tmpzz99yy/x.py id 9e8d7c6b5a pid 50123 0x7ffd9999"
    )
    assert a.fingerprint == b.fingerprint
    assert failed("attempt 1 failed").fingerprint != failed("attempt 2 failed").fingerprint
    assert normalise("took 1.25s, then 340 ms") == "took <duration>, then <duration>"
    # Short pids and ports too: they change on every run whatever their length.
    assert (
        failed("worker pid 731 died; port=8081").fingerprint
        == failed("worker pid 7345 died; port=41999").fingerprint
    )


def test_a_flaky_step_whose_output_changes_then_succeeds_is_never_stopped() -> None:
    history = [
        failed("timeout", output="progress 1/3"),
        failed("timeout", output="progress 2/3"),
        outcome(True, 0, "done", "", None),
    ]
    for end in range(1, len(history) + 1):
        assert loops.first_loop(history[:end], LEVEL) is None


def test_an_oscillation_is_caught_after_its_pattern_repeats() -> None:
    a, b = failed("state A"), failed("state B")
    history = [a, b, a, b, a]
    assert loops.first_loop(history[:4], LEVEL) is None
    verdict = loops.first_loop(history, LEVEL)
    assert verdict is not None and verdict.detector == "oscillation"
    assert verdict.evidence["period"] == 2


def test_failures_whose_output_stops_changing_are_no_progress() -> None:
    history = [failed(f"error {i}", output="stuck at step 4") for i in range(6)]
    assert loops.first_loop(history[:5], LEVEL) is None
    verdict = loops.first_loop(history, LEVEL)
    assert verdict is not None and verdict.detector == "no_progress"


def test_a_retry_storm_is_retries_failing_far_more_than_they_succeed() -> None:
    assert loops.retry_storm([False] * 14, LEVEL) is None
    storm = loops.retry_storm([False] * 15, LEVEL)
    assert storm is not None and storm.evidence["failedRetries"] == 15
    assert loops.retry_storm([False, True] * 10, LEVEL) is None


def test_a_task_failing_the_same_way_three_times_is_refused_the_fourth() -> None:
    prints = ["f1", "f1", "f1"]
    assert loops.resubmission(prints[:2], LEVEL, ended_failed=[True, True]) is None
    verdict = loops.resubmission(prints, LEVEL, ended_failed=[True, True, True])
    assert verdict is not None and verdict.evidence["count"] == 3
    assert loops.resubmission(["f1", "f1", "f1"], LEVEL, ended_failed=[True, False, True]) is None
    assert loops.resubmission(["f2", "f1", "f1"], LEVEL, ended_failed=[True, True, True]) is None


def test_signatures_name_the_pool_the_kind_and_the_arguments() -> None:
    assert signature("code", "shell", ["a", "b"]) == signature("code", "shell", ["a", "b"])
    assert signature("code", "shell", ["a", "b"]) != signature("devops", "shell", ["a", "b"])
    assert signature("code", "shell", ["a b"]) != signature("code", "shell", ["a", "b"])


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True))
def test_outcomes_that_never_repeat_are_never_stopped(texts: list[str]) -> None:
    history = [failed(f"attempt {i}: {t}", output=f"{i}") for i, t in enumerate(texts)]
    assert loops.first_loop(history, LEVEL) is None


@given(st.integers(0, 10), st.integers(1, 10))
def test_success_anywhere_at_the_end_stops_nothing(failures: int, successes: int) -> None:
    history = [failed("same")] * failures + [outcome(True, 0, "ok", "", None)] * successes
    assert loops.first_loop(history, LEVEL) is None
