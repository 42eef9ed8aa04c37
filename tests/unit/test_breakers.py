"""Circuit breakers: closed → open → half-open → closed, with time passed in."""

from __future__ import annotations

from reynolds.core.breakers import Breaker, BreakerRules, BreakerState, counts_against

RULES = BreakerRules(consecutive=3, window_s=60, window_min=6, window_ratio=0.5, cooldown_s=10)


def fail(b: Breaker, now: float) -> Breaker:
    return b.record(False, now)[0]


def test_consecutive_failures_open_it_and_a_probe_after_the_cool_down_closes_it() -> None:
    b = Breaker("code", RULES)
    b = fail(fail(b, 1), 2)
    assert b.state is BreakerState.CLOSED and b.admits(2)
    b, moved = b.record(False, 3)
    assert b.state is BreakerState.OPEN and moved is not None
    assert moved.reason == "3 failures in a row"
    assert not b.admits(12.9) and b.reopens_at() == 13
    assert b.admits(13)
    b, moved = b.start(13)
    assert b.state is BreakerState.HALF_OPEN and moved is not None
    assert not b.admits(13)  # one probe at a time
    b, moved = b.record(True, 14)
    assert b.state is BreakerState.CLOSED and moved is not None
    assert moved.reason == "probe succeeded"


def test_a_failed_probe_opens_it_again_for_twice_as_long() -> None:
    b = Breaker("code", RULES)
    for t in range(3):
        b = fail(b, t)
    b, _ = b.start(20)
    b, moved = b.record(False, 21)
    assert b.state is BreakerState.OPEN and moved is not None and moved.reason == "probe failed"
    assert b.reopens_at() == 41


def test_a_failure_ratio_within_the_window_opens_it_too() -> None:
    b = Breaker("host", RULES)
    for t, ok in enumerate([True, False, True, False, True, False]):
        b = b.record(ok, float(t))[0]
    assert b.state is BreakerState.OPEN


def test_old_failures_leave_the_window() -> None:
    b = Breaker("host", RULES)
    for t, ok in enumerate([False, True, False, True, False]):
        b = b.record(ok, float(t))[0]
    b = b.record(True, 100.0)[0]  # the earlier attempts are out of the window now
    assert b.state is BreakerState.CLOSED and [n for _, n, _ in b.recent] == [1]


def test_successes_keep_it_closed_and_reset_the_count() -> None:
    b = Breaker("code", RULES)
    for t in range(10):
        b = b.record(t % 3 != 2, float(t))[0]
    assert b.state is BreakerState.CLOSED


def test_the_window_costs_the_same_however_many_attempts_end_each_second() -> None:
    b = Breaker("host", RULES)
    for i in range(10_000):
        b = b.record(True, i / 100)[0]
    # 100 s of attempts at 100 a second: one bucket per second of the 60 s window.
    assert len(b.recent) <= 61
    assert sum(n for _, n, _ in b.recent) >= 5_900


def test_a_cancelled_probe_lets_another_through() -> None:
    b = Breaker("code", RULES)
    for t in range(3):
        b = fail(b, t)
    b, _ = b.start(20)
    assert not b.admits(20)
    b = b.abandon()
    assert b.admits(20) and b.state is BreakerState.HALF_OPEN


def test_what_counts_against_a_breaker() -> None:
    assert counts_against("timeout", "timeout")
    assert counts_against("connection", None)
    assert counts_against("resource", None)
    assert counts_against("unknown", "error")  # the runner failed (a lost worker)
    assert not counts_against("unknown", None)  # the work failed: the pool answered
    assert not counts_against("not_found", None)
