"""Routing subtasks to pools by strategy."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from reynolds.core.routing import HYBRID, SELECTIONS, PoolView, route


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


def names(spaced: str) -> list[str | None]:
    return list(spaced.split())


def deal(
    views: list[PoolView],
    n: int,
    approach: str,
    selection: str = "least_busy",
    *,
    one_at_a_time: bool = False,
) -> list[str | None]:
    """Route `n` unmatched subtasks in a row, each taking a replica of its pool; one at a time,
    each ends (and gives its replica back) before the next is routed."""
    free = {v.name: v.free for v in views}
    chosen: list[str | None] = []
    for turn in range(n):
        now = [replace(v, free=free[v.name]) for v in views]
        pool = route(None, {}, now, selection, turn, approach).pool
        chosen.append(pool)
        if pool is not None and not one_at_a_time:
            free[pool] -= 1
    return chosen


def test_hybrid_turns_unmatched_subtasks_that_come_one_at_a_time_across_idle_pools() -> None:
    assert deal(pools(), 6, HYBRID, one_at_a_time=True) == names(
        "devops platform code devops platform code"
    )
    assert deal(pools(), 6, "parallel_optimized", one_at_a_time=True) == ["devops"] * 6


def test_with_least_busy_the_approaches_differ_only_in_how_ties_are_settled() -> None:
    # Both take a pool with the largest free share; least_busy settles a tie on the first
    # pool, hybrid_intelligent by turns.
    assert deal(pools(), 8, "parallel_optimized") == names(
        "devops platform code devops code platform devops code"
    )
    assert deal(pools(), 8, HYBRID) == names(
        "devops code platform code devops platform devops code"
    )


def test_hybrid_spreads_by_free_share_where_weighted_follows_history() -> None:
    views = [
        PoolView("devops", 3, 3, success_rate=0.5),
        PoolView("platform", 2, 2, success_rate=0.5),
        PoolView("code", 3, 3, success_rate=1.0),
    ]
    assert deal(views, 8, "parallel_optimized", "weighted") == names(
        "code code code devops platform devops platform devops"
    )
    assert deal(views, 8, HYBRID, "weighted") == names(
        "devops code platform code devops platform devops code"
    )


def test_hybrid_spreads_by_free_share_where_round_robin_ignores_it() -> None:
    views = pools(devops=1)  # devops has one of its three replicas free
    assert deal(views, 6, "parallel_optimized", "round_robin") == names(
        "devops code platform code platform code"
    )
    assert deal(views, 6, HYBRID, "round_robin") == names("platform code code platform devops code")


@given(
    st.sampled_from(SELECTIONS),
    st.lists(st.integers(0, 4), min_size=3, max_size=3),
    st.integers(0, 20),
)
def test_under_hybrid_an_unmatched_subtask_takes_a_pool_with_the_largest_free_share(
    selection: str, free: list[int], turn: int
) -> None:
    views = pools(*free)
    d = route(None, {"devops": 0.0}, views, selection, turn, HYBRID)
    if not any(free):
        assert d.pool is None
        return
    share = {v.name: Fraction(v.free, v.replicas) for v in views if v.free > 0}
    assert d.pool is not None and share[d.pool] == max(share.values())
    assert "free share" in d.reason and d.selection == selection


@given(
    st.sampled_from(SELECTIONS),
    st.lists(st.integers(0, 4), min_size=3, max_size=3),
    st.integers(0, 20),
    st.dictionaries(
        st.sampled_from(["devops", "platform", "code"]), st.floats(0.5, 5.0), min_size=1
    ),
)
def test_matched_subtasks_are_routed_alike_under_hybrid_and_parallel_optimized(
    selection: str, free: list[int], turn: int, capability: dict[str, float]
) -> None:
    views = pools(*free)
    hybrid = route(None, capability, views, selection, turn, HYBRID)
    assert hybrid == route(None, capability, views, selection, turn, "parallel_optimized")
