"""The simulator: the executor's ordering, placement and retry policy, with time from a
sampler. Pure: no processes, no clock."""

from __future__ import annotations

import random

import pytest

from reynolds.core import planning, simulator
from reynolds.core.graph import Graph, Node
from reynolds.core.models import ShellAction, Strategy
from reynolds.core.simulator import Outcome, RetryPolicy

ECHO = ShellAction(kind="shell", argv=["true"])
POOLS = {"devops": 10, "platform": 10, "code": 10}


def graph(*nodes: Node) -> Graph:
    return Graph.build(nodes)


def flat(count: int) -> Graph:
    return graph(*(Node(f"n{i:02d}", i, ECHO, agent="code") for i in range(count)))


def simulate(
    g: Graph,
    strategy: Strategy,
    sample: simulator.Sampler,
    estimates: dict[str, float] | None = None,
) -> simulator.SimulatedRun:
    estimate_s = estimates or dict.fromkeys(g.nodes, 1.0)
    capability = {nid: {} for nid in g.nodes}
    return simulator.run(
        g, strategy, POOLS, capability, estimate_s, sample, jitter=random.Random(1).random,
        retry=RetryPolicy(base_s=0.5, cap_s=30.0),
    )  # fmt: skip


def test_seventeen_one_second_subtasks_take_17_s_directly_and_4_s_five_at_a_time() -> None:
    g = flat(17)
    one_second = lambda nid, attempt: Outcome(1.0)  # noqa: E731
    direct = simulate(g, Strategy(approach="direct", max_concurrency=5), one_second)
    parallel = simulate(g, Strategy(approach="parallel_optimized", max_concurrency=5), one_second)
    assert direct.makespan_s == pytest.approx(17.0)
    assert parallel.makespan_s == pytest.approx(4.0)
    assert parallel.success_rate == 1.0
    assert parallel.utilisation(5) == pytest.approx(17 / 20)
    assert max(sum(1 for a in parallel.attempts if a.start_s <= t < a.end_s) for t in range(4)) == 5


def test_a_failed_attempt_is_retried_after_the_servers_backoff_and_its_dependents_wait() -> None:
    g = graph(
        Node("flaky", 0, ECHO, agent="code", retries=1),
        Node("after", 1, ECHO, depends_on=("flaky",), agent="code"),
    )
    outcomes = {
        ("flaky", 1): Outcome(1.0, ok=False),
        ("flaky", 2): Outcome(1.0),
        ("after", 1): Outcome(2.0),
    }
    result = simulate(g, Strategy(max_concurrency=2), lambda nid, n: outcomes[(nid, n)])
    first, second, after = result.attempts
    assert (first.ok, second.ok) == (False, True)
    # The backoff is uniform in [0.5, 1) of base 0.5 s: between 0.25 and 0.5 s.
    assert 1.25 <= second.start_s < 1.5
    assert after.start_s == second.end_s and result.makespan_s == after.end_s
    assert result.status == {"flaky": "succeeded", "after": "succeeded"}


def test_a_failure_skips_what_is_below_it_but_not_a_step_that_runs_always() -> None:
    g = graph(
        Node("broken", 0, ECHO, agent="code"),
        Node("below", 1, ECHO, depends_on=("broken",), agent="code"),
        Node("fine", 2, ECHO, agent="code"),
        Node("merge", 3, None, depends_on=("broken", "below", "fine"), agent="code", always=True),
    )
    result = simulate(
        g, Strategy(max_concurrency=4), lambda nid, n: Outcome(1.0, ok=nid != "broken")
    )
    assert result.status == {
        "broken": "failed",
        "below": "skipped",
        "fine": "succeeded",
        "merge": "succeeded",
    }
    assert [a.subtask for a in result.attempts][-1] == "merge"
    assert result.success_rate == 0.5


def test_the_order_is_the_planners_longest_first_and_follows_a_swapped_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = flat(4)
    estimates = {"n00": 1.0, "n01": 4.0, "n02": 2.0, "n03": 3.0}
    sample = lambda nid, n: Outcome(estimates[nid])  # noqa: E731
    one = Strategy(approach="parallel_optimized", max_concurrency=1)
    order = [a.subtask for a in simulate(g, one, sample, estimates).attempts]
    assert order == ["n01", "n03", "n02", "n00"]
    # Shortest first instead: the simulator reads the policy where the dispatcher does.
    monkeypatch.setattr(
        planning, "order_key", lambda approach, node, bottom, est: (est, float(node.seq))
    )
    order = [a.subtask for a in simulate(g, one, sample, estimates).attempts]
    assert order == ["n00", "n02", "n03", "n01"]


def test_work_no_pool_can_take_is_left_waiting_not_looped_on() -> None:
    g = graph(Node("nowhere", 0, ECHO, agent="code"))
    result = simulator.run(
        g, Strategy(), {"code": 0}, {"nowhere": {}}, {"nowhere": 1.0}, lambda nid, n: Outcome(1.0),
        jitter=random.Random(1).random,
    )  # fmt: skip
    assert result.status == {"nowhere": "waiting"} and result.makespan_s == 0.0
