"""Token buckets with a fake clock: bursts, refill, separate callers, bounded memory."""

from __future__ import annotations

import pytest

from reynolds.core.ratelimit import TokenBuckets, retry_after_s


def test_a_full_bucket_allows_a_burst_then_says_how_long_to_wait() -> None:
    buckets = TokenBuckets(rate_per_s=2, burst=3)
    assert [buckets.take("a", now=10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", now=10.0) == pytest.approx(0.5)


def test_tokens_come_back_at_the_sustained_rate_up_to_the_burst() -> None:
    buckets = TokenBuckets(rate_per_s=2, burst=3)
    for _ in range(3):
        buckets.take("a", now=0.0)
    assert buckets.take("a", now=0.25) == pytest.approx(0.25)  # half a token back
    assert buckets.take("a", now=0.5) == 0.0
    # A long pause refills to the burst, never beyond it.
    assert [buckets.take("a", now=100.0) for _ in range(4)][-1] > 0


def test_each_key_has_its_own_bucket() -> None:
    buckets = TokenBuckets(rate_per_s=1, burst=1)
    assert buckets.take("alice", now=0.0) == 0.0
    assert buckets.take("alice", now=0.0) > 0
    assert buckets.take("bob", now=0.0) == 0.0


def test_a_clock_that_goes_backwards_never_adds_tokens() -> None:
    buckets = TokenBuckets(rate_per_s=1, burst=1)
    buckets.take("a", now=100.0)
    assert buckets.take("a", now=50.0) > 0


def test_memory_stays_bounded_when_many_callers_come_and_go() -> None:
    buckets = TokenBuckets(rate_per_s=10, burst=5, max_keys=100)
    for i in range(10_000):
        buckets.take(f"addr-{i}", now=i * 0.001)
    assert len(buckets) <= 100


def test_idle_buckets_are_forgotten_before_busy_ones() -> None:
    buckets = TokenBuckets(rate_per_s=1, burst=2, max_keys=4)
    buckets.take("busy", now=0.0)
    for i in range(2):
        buckets.take(f"idle-{i}", now=0.0)
    buckets.take("busy", now=9.0)
    buckets.take("busy", now=9.0)  # spent: 0 tokens left
    buckets.take("late", now=9.0)
    buckets.take("newcomer", now=9.0)  # the fifth key evicts the idle, refilled ones
    assert buckets.take("busy", now=9.0) > 0


def test_retry_after_is_a_whole_number_of_seconds_at_least_one() -> None:
    assert retry_after_s(0.001) == 1
    assert retry_after_s(1.0) == 1
    assert retry_after_s(1.2) == 2


def test_a_bucket_without_rate_or_burst_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate_per_s=0, burst=10)
    with pytest.raises(ValueError):
        TokenBuckets(rate_per_s=1, burst=0)
