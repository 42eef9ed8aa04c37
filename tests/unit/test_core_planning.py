"""Planning: list scheduling with the executor's own policy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reynolds.core import planning
from reynolds.core.graph import Graph, Node
from reynolds.core.models import ShellAction, Strategy
from reynolds.errors import InvalidInput

TRUE = ShellAction(kind="shell", argv=["true"])
POOLS = {"devops": 3, "platform": 2, "code": 3}


def flat(n: int) -> Graph:
    return Graph.build([Node(id=f"c{i}", seq=i, action=TRUE) for i in range(n)])


def test_seventeen_one_second_subtasks_at_five_take_four_seconds() -> None:
    g = flat(17)
    est = dict.fromkeys(g.nodes, 1.0)
    plan = planning.plan_summary(g, est, Strategy(max_concurrency=5), POOLS, {})
    assert plan["estimatedParallelSeconds"] == 4.0
    assert plan["estimatedSequentialSeconds"] == 17.0
    assert plan["estimatedSpeedup"] == 4.25


def test_direct_runs_one_at_a_time() -> None:
    g = flat(4)
    est = dict.fromkeys(g.nodes, 2.0)
    sim = planning.simulate(g, est, Strategy(approach="direct", max_concurrency=8), POOLS, {})
    assert sim.makespan_s == 8.0


def test_an_explicit_agent_waits_for_its_own_pool() -> None:
    nodes = [Node(id=f"p{i}", seq=i, action=TRUE, agent="platform") for i in range(4)]
    g = Graph.build(nodes)
    sim = planning.simulate(g, dict.fromkeys(g.nodes, 1.0), Strategy(max_concurrency=8), POOLS, {})
    assert sim.makespan_s == 2.0  # two platform replicas, four subtasks


def test_unmatched_subtasks_use_every_free_slot_across_pools() -> None:
    g = flat(8)
    sim = planning.simulate(g, dict.fromkeys(g.nodes, 1.0), Strategy(max_concurrency=8), POOLS, {})
    assert sim.makespan_s == 1.0


def test_the_plan_spreads_a_chain_of_unmatched_subtasks_under_hybrid_only() -> None:
    nodes = [
        Node(id=f"c{i}", seq=i, action=TRUE, depends_on=[f"c{i - 1}"] if i else [])
        for i in range(4)
    ]
    g = Graph.build(nodes)
    est = dict.fromkeys(g.nodes, 1.0)
    hybrid = planning.simulate(g, est, Strategy(approach="hybrid_intelligent"), POOLS, {})
    optimized = planning.simulate(g, est, Strategy(approach="parallel_optimized"), POOLS, {})
    assert [hybrid.pool[n] for n in g.nodes] == ["devops", "platform", "code", "devops"]
    assert set(optimized.pool.values()) == {"devops"}


def test_longest_subtasks_start_first_when_estimates_are_known() -> None:
    g = flat(4)
    est = {"c0": 1.0, "c1": 1.0, "c2": 1.0, "c3": 3.0}
    sim = planning.simulate(g, est, Strategy(max_concurrency=2), POOLS, {})
    assert sim.start_s["c3"] == 0.0
    assert sim.makespan_s == 3.0


def test_history_is_used_when_no_estimate_is_given() -> None:
    g = flat(2)
    keys = {nid: planning.history_keys("t", n) for nid, n in g.nodes.items()}
    est = planning.estimates(g, keys, {keys["c0"][0]: 7.5}, 1.0)
    assert est == {"c0": 7.5, "c1": 7.5}  # same argv, same history key


def test_a_long_argv_is_remembered_by_a_digest_that_tells_argvs_apart() -> None:
    # The store keeps keys of at most 1,000 characters (PostgreSQL refuses longer ones).
    def key(arg: str) -> str:
        action = ShellAction(kind="shell", argv=["echo", "{component}", arg])
        return planning.history_keys("t", Node(id="a", seq=0, action=action, component="c"))[0]

    long_a, long_b, short = key("a" * 5000), key("a" * 4999 + "b"), key("a")
    assert long_a.startswith("argv:sha256:") and len(long_a) < 100
    assert long_a != long_b
    assert long_a == key("a" * 5000)
    assert short == 'argv:["echo","c","a"]'


def test_a_subtask_too_long_to_run_is_refused_when_planned() -> None:
    action = ShellAction(kind="shell", argv=["echo", "{component}" * 400])
    node = Node(id="s:big", seq=0, action=action, component="x" * 500)
    with pytest.raises(InvalidInput) as refused:
        planning.history_keys("t", node)
    assert "s:big" in refused.value.message and "200,000 bytes" in refused.value.message


@given(st.integers(1, 40), st.integers(1, 12))
def test_a_flat_workload_takes_ceil_n_over_slots_rounds(n: int, conc: int) -> None:
    g = flat(n)
    sim = planning.simulate(
        g, dict.fromkeys(g.nodes, 1.0), Strategy(max_concurrency=conc), POOLS, {}
    )
    assert sim.makespan_s == math.ceil(n / min(conc, sum(POOLS.values())))


@given(st.lists(st.floats(0.1, 10), min_size=1, max_size=25), st.integers(1, 8))
def test_the_makespan_lies_between_the_longest_subtask_and_the_sum(
    durations: list[float], conc: int
) -> None:
    g = flat(len(durations))
    est = {f"c{i}": d for i, d in enumerate(durations)}
    sim = planning.simulate(g, est, Strategy(max_concurrency=conc), POOLS, {})
    assert max(durations) - 1e-9 <= sim.makespan_s <= sum(durations) + 1e-9


def test_round_robin_in_the_simulation_deals_subtasks_to_each_pool_in_turn() -> None:
    g = flat(3)
    sim = planning.simulate(
        g,
        dict.fromkeys(g.nodes, 1.0),
        Strategy(max_concurrency=8, selection="round_robin"),
        POOLS,
        {},
    )
    assert sorted(sim.pool.values()) == ["code", "devops", "platform"]


def test_least_busy_simulation_sends_matching_work_to_its_pool_until_it_is_full() -> None:
    g = flat(4)
    match = {nid: {"devops": 0.0, "platform": 0.0, "code": 2.0} for nid in g.nodes}
    sim = planning.simulate(
        g, dict.fromkeys(g.nodes, 1.0), Strategy(max_concurrency=8), POOLS, match
    )
    assert sorted(sim.pool.values()).count("code") == 3
    assert sim.makespan_s == 1.0  # the fourth takes a free slot elsewhere instead of waiting
