"""AIMD: halve on overload, grow by about one per round of successes, honour Retry-After."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reynolds.core.limiter import Limiter


def test_overload_halves_the_limit_and_successes_grow_it_back() -> None:
    lim = Limiter.starting(12)
    lim = lim.overloaded(0).overloaded(0)
    assert lim.limit == 3
    for _ in range(3):
        lim = lim.succeeded()
    assert 3.9 < lim.limit < 4.1  # about one more per round of `limit` successes


def test_retry_after_holds_every_attempt_until_it_has_passed() -> None:
    lim = Limiter.starting(4).overloaded(10.0, retry_after_s=2.0)
    assert not lim.admits(0, 11.9)
    assert lim.admits(0, 12.0)
    assert not lim.admits(2, 12.0)  # the limit is 2 now


@given(st.lists(st.booleans(), max_size=200), st.integers(1, 20))
def test_the_limit_stays_between_the_floor_and_the_ceiling(
    events: list[bool], ceiling: int
) -> None:
    lim = Limiter.starting(ceiling)
    for ok in events:
        lim = lim.succeeded() if ok else lim.overloaded(0)
        assert lim.floor <= lim.limit <= lim.ceiling


def test_answers_to_attempts_sent_before_a_decrease_do_not_halve_it_again() -> None:
    lim = Limiter.starting(12)
    # Twelve attempts started at 0.0; the first 429 comes back at 1.0 and halves the limit.
    lim = lim.overloaded(1.0, started_at=0.0, running=12)
    assert lim.limit == 6
    for _ in range(8):  # the other answers of that round
        lim = lim.overloaded(1.1, started_at=0.0, running=11)
    assert lim.limit == 6 and lim.overloads == 9
    # An attempt sent under the new limit, answered 429: that is news.
    lim = lim.overloaded(2.0, started_at=1.5, running=6)
    assert lim.limit == 3


def test_the_first_decrease_starts_from_the_concurrency_there_was() -> None:
    lim = Limiter.starting(12).overloaded(1.0, started_at=0.5, running=4)
    assert lim.limit == 2
    assert not lim.idle
    for _ in range(200):
        lim = lim.succeeded()
    assert lim.idle and lim.limit == 12
