"""Turning a task into a graph: steps × components, explicit subtasks, or a pattern by type."""

from __future__ import annotations

from dataclasses import dataclass

from reynolds.core.graph import Graph, Node
from reynolds.core.models import RunOptions, TaskSpec
from reynolds.core.pools import PoolSet, capability_scores, preferred_pool
from reynolds.core.worktrees import INTEGRATE_ID
from reynolds.errors import InvalidInput, UnknownDependency

# Keywords as users write task types ("db-migration", "release", "audit"), first match wins.
PATTERN_KEYWORDS: dict[str, tuple[str, ...]] = {
    "migration": ("migrat", "port", "upgrade", "convert", "refactor", "rewrite", "modernis"),
    "deployment": ("deploy", "release", "rollout", "roll-out", "ship", "provision", "launch"),
    "development": ("develop", "implement", "feature", "build", "code", "fix", "bug"),
    "analysis": ("analy", "audit", "review", "scan", "inspect", "assess", "report", "research"),
}


def pattern_for(task_type: str) -> str:
    """The decomposition pattern a task type asks for: migration, deployment, ... or default."""
    text = task_type.lower()
    for pattern, keys in PATTERN_KEYWORDS.items():
        if any(k in text for k in keys):
            return pattern
    return "default"


@dataclass(frozen=True, slots=True)
class Decomposition:
    graph: Graph
    pattern: str | None  # the pattern used, or None for steps/subtasks
    message: str | None  # set when nothing is runnable: what to add


def decompose(spec: TaskSpec, pools: PoolSet) -> Decomposition:
    """Build the graph for a task; raises PlanError/InvalidInput naming the problem."""
    if spec.steps is not None:
        return Decomposition(Graph.build(_from_steps(spec, pools)), None, None)
    if spec.subtasks is not None:
        return Decomposition(Graph.build(_from_subtasks(spec, pools)), None, None)
    return _from_pattern(spec, pools)


def _agent(pools: PoolSet, name: str | None, field: str) -> str | None:
    if name is None:
        return None
    try:
        return pools.resolve(name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=field) from exc


def _node(nid: str, seq: int, opts: RunOptions, agent: str | None, **extra: object) -> Node:
    return Node(
        id=nid,
        seq=seq,
        action=opts.action,
        agent=agent,
        description=opts.description,
        timeout_s=opts.timeout_seconds,
        retries=opts.retries,
        estimate_s=opts.estimated_seconds,
        idempotent=opts.idempotent,
        allow_option_values=opts.allow_option_values,
        loop_prevention=opts.loop_prevention,
        **extra,  # type: ignore[arg-type]  # depends_on, component, step: typed on Node
    )


def _from_steps(spec: TaskSpec, pools: PoolSet) -> list[Node]:
    assert spec.steps is not None
    names = {s.name for s in spec.steps}
    for i, step in enumerate(spec.steps):
        unknown = [a for a in step.after if a not in names]
        if unknown:
            raise UnknownDependency(
                f"step {step.name!r} comes after unknown step(s): {', '.join(unknown)}",
                field=f"task.steps.{i}.after",
            )
    agents = [_agent(pools, s.agent, f"task.steps.{i}.agent") for i, s in enumerate(spec.steps)]
    components: list[str | None] = list(spec.components) or [None]
    nodes: list[Node] = []
    for component in components:
        for step, agent in zip(spec.steps, agents, strict=True):
            nid = step.name if component is None else f"{step.name}:{component}"
            deps = tuple(a if component is None else f"{a}:{component}" for a in step.after)
            nodes.append(
                _node(
                    nid,
                    len(nodes),
                    step,
                    agent,
                    depends_on=deps,
                    component=component,
                    step=step.name,
                )
            )
    return nodes


def _from_subtasks(spec: TaskSpec, pools: PoolSet) -> list[Node]:
    assert spec.subtasks is not None
    return [
        _node(
            sub.id,
            i,
            sub,
            _agent(pools, sub.agent, f"task.subtasks.{i}.agent"),
            depends_on=tuple(sub.depends_on),
            component=sub.component,
            step=sub.id,
        )
        for i, sub in enumerate(spec.subtasks)
    ]


def _pattern_shape(
    pattern: str, components: list[str]
) -> list[tuple[str, str | None, str, list[str]]]:
    """(step, component, pool, [upstream steps]) for each subtask of a pattern."""
    each: list[str | None] = list(components) or [None]
    rows: list[tuple[str, str | None, str, list[str]]] = []
    if pattern == "migration":
        rows += [("migrate", c, "code", []) for c in each]
        rows.append(("validate", None, "code", ["migrate"]))
    elif pattern == "deployment":
        rows.append(("setup-infrastructure", None, "devops", []))
        rows += [("deploy", c, "devops", ["setup-infrastructure"]) for c in each]
        rows.append(("validate", None, "devops", ["deploy"]))
    elif pattern == "development":
        rows += [("implement", c, "code", []) for c in each]
        rows += [("test", c, "code", ["implement"]) for c in each]
        rows.append(("integrate", None, "code", ["test"]))
    elif pattern == "analysis":
        rows += [("analyze", c, "code", []) for c in each]
        rows.append(("aggregate", None, "code", ["analyze"]))
    else:
        rows.append(("prepare", None, "", []))
        rows += [("execute", c, "", ["prepare"]) for c in each]
        rows.append(("validate", None, "", ["execute"]))
    return rows


def _from_pattern(spec: TaskSpec, pools: PoolSet) -> Decomposition:
    pattern = pattern_for(spec.type)
    fallback = preferred_pool(capability_scores(pools, f"{spec.type} {spec.description}", None))
    if fallback is None:
        with_executor = [k for k, p in pools.pools.items() if p.executor is not None]
        fallback = with_executor[0] if with_executor else next(iter(pools.pools), "")
    return from_rows(_pattern_shape(pattern, spec.components), pools, pattern, fallback)


def from_rows(
    rows: list[tuple[str, str | None, str, list[str]]],
    pools: PoolSet,
    pattern: str,
    agent_fallback: str,
) -> Decomposition:
    """The graph of (step, component, pool, [upstream steps]) rows, each subtask running its
    pool's executor (`agent_fallback` for a pool not configured). A subtask of a component
    waits for the same component's subtask of an upstream step, or for all of that step's."""
    nodes: list[Node] = []
    ids_by_step: dict[str, list[str]] = {}
    lacking: set[str] = set()
    for step, component, pool_name, upstream in rows:
        pool_key = pool_name if pool_name in pools.pools else agent_fallback
        pool = pools.pools.get(pool_key)
        nid = step if component is None else f"{step}:{component}"
        deps: list[str] = []
        for up in upstream:
            same = f"{up}:{component}"
            deps += (
                [same]
                if component is not None and same in ids_by_step.get(up, [])
                else (ids_by_step.get(up, []))
            )
        if pool is None or pool.executor is None:
            lacking.add(pool_key or "(none)")
        action = pool.executor if pool is not None and pool.executor is not None else None
        nodes.append(
            Node(
                id=nid,
                seq=len(nodes),
                action=action,
                depends_on=tuple(deps),
                component=component,
                step=step,
                agent=pool_key or None,
            )
        )
        ids_by_step.setdefault(step, []).append(nid)
    graph = Graph.build(nodes)
    message = None
    if lacking:
        message = (
            f"Nothing to run: the {pattern} {'plan' if pattern == 'llm' else 'pattern'} needs "
            f"an executor for the {', '.join(sorted(lacking))} pool(s). Add `executor:` (an "
            "action with {component} and {step} placeholders) to that pool in "
            "config/agents.yaml, or give the task `steps` or `subtasks`."
        )
    return Decomposition(graph, pattern, message)


def with_integration(dec: Decomposition, spec: TaskSpec, pools: PoolSet) -> Decomposition:
    """The graph with the workspace's merge step last, after every other subtask whatever
    their status (`integrate`, or `integrate:branches` when a subtask has that id)."""
    workspace = spec.workspace
    if workspace is None or workspace.merge is None:
        return dec
    merge = workspace.merge
    nodes = list(dec.graph.nodes.values())
    nid = INTEGRATE_ID if INTEGRATE_ID not in dec.graph.nodes else f"{INTEGRATE_ID}:branches"
    step = Node(
        id=nid,
        seq=len(nodes),
        action=merge.check,
        depends_on=tuple(n.id for n in nodes),
        step=INTEGRATE_ID,
        agent=_agent(pools, merge.agent, "task.workspace.merge.agent"),
        description=f"merge the subtasks' branches into {merge.into}",
        timeout_s=merge.timeout_seconds,
        always=True,
    )
    return Decomposition(Graph.build([*nodes, step]), dec.pattern, dec.message)
