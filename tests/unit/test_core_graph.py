"""The graph: links are checked, cycles named, levels and the critical path computed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reynolds.core.graph import Graph, Node, bottom_levels, critical_path
from reynolds.core.models import ShellAction
from reynolds.errors import CycleDetected, UnknownDependency

TRUE = ShellAction(kind="shell", argv=["true"])


def node(nid: str, *deps: str, seq: int = 0) -> Node:
    return Node(id=nid, seq=seq, action=TRUE, depends_on=deps)


def test_a_diamond_has_three_levels_with_the_branches_side_by_side() -> None:
    g = Graph.build([node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")])
    assert g.levels() == [["a"], ["b", "c"], ["d"]]


def test_a_dangling_dependency_is_refused_naming_both_ends() -> None:
    with pytest.raises(UnknownDependency) as err:
        Graph.build([node("a", "ghost")])
    assert "a → ghost" in err.value.message
    assert err.value.details["missing"] == [{"subtask": "a", "dependsOn": "ghost"}]


def test_a_cycle_is_refused_and_listed() -> None:
    with pytest.raises(CycleDetected) as err:
        Graph.build([node("a", "c"), node("b", "a"), node("c", "b"), node("d")])
    cycle = err.value.details["cycle"]
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_a_self_loop_is_a_cycle() -> None:
    with pytest.raises(CycleDetected):
        Graph.build([node("a", "a")])


def test_the_critical_path_follows_the_longest_estimates() -> None:
    g = Graph.build([node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")])
    est = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0}
    assert critical_path(g, est) == ["a", "b", "d"]
    assert bottom_levels(g, est)["a"] == 7.0


@st.composite
def dags(draw: st.DrawFn) -> list[Node]:
    n = draw(st.integers(1, 30))
    nodes = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        nodes.append(node(f"n{i}", *(f"n{d}" for d in sorted(deps)), seq=i))
    return nodes


@given(dags())
def test_every_node_sits_in_a_level_after_all_its_dependencies(nodes: list[Node]) -> None:
    g = Graph.build(nodes)
    level_of = {nid: i for i, level in enumerate(g.levels()) for nid in level}
    assert set(level_of) == {n.id for n in nodes}
    for n in nodes:
        for dep in n.depends_on:
            assert level_of[dep] < level_of[n.id]
