"""Auto-scaling decisions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reynolds.core.scaling import ScalingDecision, Signals, Thresholds, decide

T = Thresholds(cooldown_s=30)


def signals(
    replicas: int = 3, busy: int = 3, queue: int = 0, cpu: float = 10, mem: float = 10
) -> Signals:
    return Signals(replicas, busy, queue, cpu, mem)


def decide_now(sig: Signals, last_change_s: float | None = None) -> ScalingDecision | None:
    """A decision for a 1..5 pool at t = 100 s."""
    return decide(
        sig, min_replicas=1, max_replicas=5, thresholds=T, now_s=100, last_change_s=last_change_s
    )


def test_a_deep_queue_adds_one_replica() -> None:
    d = decide_now(signals(queue=8))
    assert d is not None and (d.current, d.target, d.direction) == (3, 4, "up")
    assert "queue 8" in d.reason


def test_two_agreeing_signals_add_two_replicas_within_the_maximum() -> None:
    d = decide_now(signals(queue=9, cpu=90))
    assert d is not None and d.target == 5
    d = decide_now(signals(replicas=4, busy=4, queue=9, cpu=90))
    assert d is not None and d.target == 5


def test_nothing_changes_within_the_cool_down() -> None:
    assert decide_now(signals(queue=20), last_change_s=80) is None


def test_an_idle_pool_shrinks_one_at_a_time_but_not_below_its_busy_replicas() -> None:
    d = decide_now(signals(replicas=4, busy=0))
    assert d is not None and (d.target, d.direction) == (3, "down")
    assert decide_now(signals(replicas=3, busy=3)) is None


def test_high_cpu_without_waiting_work_does_not_scale_up() -> None:
    assert decide_now(signals(cpu=95)) is None


@given(
    st.integers(0, 10),
    st.integers(0, 10),
    st.integers(0, 50),
    st.floats(0, 100),
    st.floats(0, 100),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_the_target_always_lies_within_min_and_max(
    replicas: int, busy: int, queue: int, cpu: float, mem: float, lo: int, extra: int
) -> None:
    hi = max(lo, 1) + extra
    d = decide(
        Signals(replicas, min(busy, replicas), queue, cpu, mem),
        min_replicas=lo,
        max_replicas=hi,
        thresholds=T,
        now_s=100,
        last_change_s=None,
    )
    if d is not None:
        assert lo <= d.target <= hi
        assert d.target != d.current
