"""The subtask graph: nodes, validation (dangling links, cycles) and topological levels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reynolds.core.models import Action
from reynolds.errors import CycleDetected, UnknownDependency


@dataclass(frozen=True, slots=True)
class Node:
    """One subtask as the scheduler sees it."""

    id: str
    seq: int
    action: Action | None  # None only in a pattern task left `planned` (no executor)
    depends_on: tuple[str, ...] = ()
    component: str | None = None
    step: str | None = None
    agent: str | None = None  # the requested pool, canonical name, or None for "any"
    description: str = ""
    timeout_s: float | None = None
    retries: int = 0
    estimate_s: float | None = None
    idempotent: bool = True
    allow_option_values: bool = False
    loop_prevention: bool = True
    # Runs once its dependencies have ended, whatever their status (a workspace's merge step).
    always: bool = False

    def spec(self) -> dict[str, Any]:
        """The run options as stored and shown (camelCase)."""
        return {
            "action": self.action.model_dump(mode="json", by_alias=True, exclude_none=True)
            if self.action is not None
            else None,
            "agent": self.agent,
            "description": self.description,
            "timeoutSeconds": self.timeout_s,
            "retries": self.retries,
            "estimatedSeconds": self.estimate_s,
            "idempotent": self.idempotent,
            "allowOptionValues": self.allow_option_values,
            "loopPrevention": self.loop_prevention,
            **({"always": True} if self.always else {}),
        }


@dataclass(slots=True)
class Graph:
    """Nodes in decomposition order, with the reverse links computed once."""

    nodes: dict[str, Node]
    dependents: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, nodes: Iterable[Node]) -> Graph:
        """Index the nodes and check every link; raise on dangling links and cycles."""
        by_id: dict[str, Node] = {}
        for node in nodes:
            by_id[node.id] = node
        dependents: dict[str, list[str]] = {nid: [] for nid in by_id}
        missing: list[dict[str, str]] = []
        for node in by_id.values():
            for dep in node.depends_on:
                if dep not in by_id:
                    missing.append({"subtask": node.id, "dependsOn": dep})
                else:
                    dependents[dep].append(node.id)
        if missing:
            names = ", ".join(f"{m['subtask']} → {m['dependsOn']}" for m in missing[:10])
            raise UnknownDependency(f"unknown dependencies: {names}", missing=missing)
        graph = cls(by_id, dependents)
        cycle = graph.find_cycle()
        if cycle:
            raise CycleDetected(f"dependency cycle: {' → '.join(cycle)}", cycle=cycle)
        return graph

    def find_cycle(self) -> list[str]:
        """A cycle as a closed list of ids (first == last), or [] when the graph is a DAG."""
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self.nodes, white)
        for root in self.nodes:
            if colour[root] != white:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = [root]
            colour[root] = grey
            while stack:
                nid, i = stack[-1]
                deps = self.nodes[nid].depends_on
                if i < len(deps):
                    stack[-1] = (nid, i + 1)
                    dep = deps[i]
                    if colour[dep] == grey:
                        return [*path[path.index(dep) :], dep][::-1]
                    if colour[dep] == white:
                        colour[dep] = grey
                        stack.append((dep, 0))
                        path.append(dep)
                else:
                    colour[nid] = black
                    stack.pop()
                    path.pop()
        return []

    def levels(self) -> list[list[str]]:
        """Topological levels: each level depends only on earlier ones (Kahn's algorithm)."""
        indegree = {nid: len(n.depends_on) for nid, n in self.nodes.items()}
        level = [nid for nid, d in indegree.items() if d == 0]
        out: list[list[str]] = []
        while level:
            out.append(level)
            nxt: list[str] = []
            for nid in level:
                for child in self.dependents[nid]:
                    indegree[child] -= 1
                    if indegree[child] == 0:
                        nxt.append(child)
            level = nxt
        return out

    def topological_order(self) -> list[str]:
        return [nid for level in self.levels() for nid in level]

    def descendants(self, nid: str) -> list[str]:
        """Every node downstream of `nid`, each once."""
        seen: set[str] = set()
        out: list[str] = []
        stack = list(self.dependents[nid])
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            out.append(cur)
            stack.extend(self.dependents[cur])
        return out


def bottom_levels(graph: Graph, estimate_s: Mapping[str, float]) -> dict[str, float]:
    """Longest estimated path from each node to a sink, the node itself included."""
    out: dict[str, float] = {}
    for nid in reversed(graph.topological_order()):
        tail = max((out[c] for c in graph.dependents[nid]), default=0.0)
        out[nid] = estimate_s[nid] + tail
    return out


def critical_path(graph: Graph, estimate_s: Mapping[str, float]) -> list[str]:
    """The chain of nodes whose estimates add up to the longest path."""
    bottom = bottom_levels(graph, estimate_s)
    roots = [nid for nid, n in graph.nodes.items() if not n.depends_on]
    if not roots:
        return []
    cur = max(roots, key=lambda nid: (bottom[nid], -graph.nodes[nid].seq))
    path = [cur]
    while graph.dependents[cur]:
        cur = max(graph.dependents[cur], key=lambda nid: (bottom[nid], -graph.nodes[nid].seq))
        path.append(cur)
    return path
