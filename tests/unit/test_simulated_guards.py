"""The simulator under circuit breakers and adaptive limits: the guards' own state machine
(core/guarding.py, the dispatcher's) holds simulated work back as it would hold real work.
Pure: no processes, no clock."""

from __future__ import annotations

import random

import pytest

from reynolds.core import simulator
from reynolds.core.breakers import BreakerRules
from reynolds.core.downstreams import Overload
from reynolds.core.experiments import Failing, Variant
from reynolds.core.failures import CLASSES
from reynolds.core.graph import Graph, Node
from reynolds.core.models import HttpAction, ShellAction, Strategy
from reynolds.core.simulator import GuardPolicy, Outcome

ECHO = ShellAction(kind="shell", argv=["true"])
API = HttpAction(kind="http", url="http://api.example/items")
COOLDOWN_S = 10.0


def run(
    nodes: list[Node],
    sample: simulator.Sampler,
    *,
    pools: dict[str, int],
    concurrency: int,
    guards: GuardPolicy,
) -> simulator.SimulatedRun:
    g = Graph.build(nodes)
    return simulator.run(
        g, Strategy(max_concurrency=concurrency), pools, {nid: {} for nid in g.nodes},
        dict.fromkeys(g.nodes, 1.0), sample, jitter=random.Random(1).random, guards=guards,
    )  # fmt: skip


def two_failures_then_work(failure_class: str) -> simulator.SimulatedRun:
    """Six one-second subtasks on one code agent; the first two fail as `failure_class` says."""
    nodes = [Node(f"n{i}", i, ECHO, agent="code") for i in range(6)]
    failing = Failing(1.0, failure_class)

    def sample(nid: str, attempt: int) -> Outcome:
        return failing.outcome(1.0, nid not in ("n0", "n1"))

    rules = BreakerRules(consecutive=2, cooldown_s=COOLDOWN_S)
    return run(nodes, sample, pools={"code": 1}, concurrency=1, guards=GuardPolicy(rules))


def test_a_pool_that_keeps_timing_out_waits_out_its_cool_down_and_is_probed() -> None:
    timed_out = two_failures_then_work("timeout")
    starts = {a.subtask: a.start_s for a in timed_out.attempts}
    # Two timeouts in a row open the code pool's breaker at 2 s: nothing starts there until
    # the cool-down is over, then one probe, which closes it, and the rest.
    assert timed_out.breaker_opens == 1
    assert starts["n2"] == pytest.approx(2.0 + COOLDOWN_S)
    assert timed_out.makespan_s == pytest.approx(6.0 + COOLDOWN_S)
    assert timed_out.status["n5"] == "succeeded"


def test_work_failing_on_its_own_terms_holds_nothing_back() -> None:
    own = two_failures_then_work("unknown")  # a command exiting 1: the pool answered
    assert own.breaker_opens == 0
    assert own.makespan_s == pytest.approx(6.0)


def overloaded(adaptive: bool) -> simulator.SimulatedRun:
    """24 one-second calls to one API at eight at a time; the first eight are told "not now"
    once each."""
    nodes = [Node(f"n{i:02d}", i, API, agent="code", retries=1) for i in range(24)]

    def sample(nid: str, attempt: int) -> Outcome:
        if attempt == 1 and int(nid[1:]) < 8:
            return Outcome(1.0, False, "exit", "resource", Overload("HTTP 429"))
        return Outcome(1.0)

    return run(
        nodes, sample, pools={"code": 16}, concurrency=8,
        guards=GuardPolicy(BreakerRules(), adaptive=adaptive),
    )  # fmt: skip


def most_at_once(result: simulator.SimulatedRun, t: float) -> int:
    return sum(1 for a in result.attempts if a.start_s <= t < a.end_s)


def test_an_overloaded_downstream_gets_half_the_concurrency_then_earns_it_back() -> None:
    adaptive, fixed = overloaded(True), overloaded(False)
    # Eight answered 429 together: one signal, the limit halves once, to four.
    assert most_at_once(adaptive, 1.5) == 4
    assert most_at_once(fixed, 1.5) == 8
    # Each success adds 1/limit: the limit grows back past five by the fourth second.
    assert most_at_once(adaptive, 4.5) >= 5
    assert adaptive.makespan_s > fixed.makespan_s
    assert all(s == "succeeded" for s in adaptive.status.values())
    assert adaptive.breaker_opens == fixed.breaker_opens == 0


def test_a_failure_another_attempt_would_meet_again_is_not_retried() -> None:
    nodes = [Node("refused", 0, ECHO, agent="code", retries=3)]
    result = run(
        nodes, lambda nid, n: Failing(1.0, "permission").outcome(1.0, False),
        pools={"code": 1}, concurrency=1, guards=GuardPolicy(),
    )  # fmt: skip
    assert len(result.attempts) == 1 and result.status == {"refused": "failed"}


def test_a_variant_may_inject_every_failure_class_and_overload() -> None:
    for name in (*CLASSES, "overload"):
        assert Variant.model_validate({"name": "v", "failureClass": name}).failure_class == name
    with pytest.raises(ValueError, match="failureClass"):
        Variant.model_validate({"name": "v", "failureClass": "gremlins"})
