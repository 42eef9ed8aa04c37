"""Routing subtasks to pools by strategy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reynolds.core.routing import SELECTIONS, PoolView, route


def pools(devops: int = 3, platform: int = 2, code: int = 3) -> list[PoolView]:
    return [
        PoolView("devops", devops, 3),
        PoolView("platform", platform, 2),
        PoolView("code", code, 3),
    ]


def test_an_explicit_agent_waits_for_its_own_pool() -> None:
    d = route("platform", {}, pools(platform=0))
    assert d.pool is None and "waiting" in d.reason
    assert route("platform", {}, pools()).pool == "platform"


def test_a_capability_match_wins_while_its_pool_has_room() -> None:
    d = route(None, {"code": 2.0, "devops": 0.0}, pools())
    assert (d.pool, d.reason) == ("code", "capability match")
    assert d.scores["code"] > d.scores["devops"]


def test_an_unmatched_subtask_takes_any_free_slot_rather_than_waiting() -> None:
    d = route(None, {"code": 2.0}, pools(code=0))
    assert d.pool in {"devops", "platform"}
    assert route(None, {}, pools(0, 0, 0)).pool is None


def test_least_busy_prefers_the_pool_with_the_most_room() -> None:
    assert route(None, {}, pools(devops=1, platform=2, code=1)).pool == "platform"


def test_most_capable_weighs_history_after_capability() -> None:
    views = [PoolView("a", 1, 3, success_rate=0.5), PoolView("b", 1, 3, success_rate=1.0)]
    assert route(None, {"a": 1.0, "b": 1.0}, views, "most_capable").pool == "b"


def test_round_robin_takes_turns() -> None:
    chosen = [route(None, {}, pools(), "round_robin", turn=i).pool for i in range(6)]
    assert chosen == ["devops", "platform", "code", "devops", "platform", "code"]


def test_weighted_prefers_the_faster_pool_all_else_equal() -> None:
    views = [PoolView("slow", 2, 2, latency_s=5.0), PoolView("fast", 2, 2, latency_s=1.0)]
    assert route(None, {}, views, "weighted").pool == "fast"


@given(
    st.sampled_from(SELECTIONS),
    st.lists(st.integers(0, 4), min_size=3, max_size=3),
    st.integers(0, 20),
)
def test_a_chosen_pool_always_has_a_free_replica(
    selection: str, free: list[int], turn: int
) -> None:
    views = pools(*free)
    d = route(None, {"devops": 1.0}, views, selection, turn)
    if any(free):
        assert d.pool is not None
        assert next(v.free for v in views if v.name == d.pool) > 0
    else:
        assert d.pool is None
