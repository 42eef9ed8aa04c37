"""The one resource registry behind REST (`/mcp/resources/...`) and MCP (`reynolds://...`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reynolds.core import loops
from reynolds.core.decomposition import PATTERN_KEYWORDS
from reynolds.core.reporting import iso
from reynolds.core.wisdom import PERSONALITY
from reynolds.errors import NotFound
from reynolds.services.experiments import Experiments
from reynolds.services.patterns import failure_patterns

if TYPE_CHECKING:  # the stdio proxy imports the names below without the server stack
    from reynolds.services.engine import Engine

SCHEME = "reynolds://"
JSON_TYPE = "application/json"
PROMETHEUS_TYPE = "text/plain; version=0.0.4"
TASK_PREFIX = "tasks/"
TASK_TEMPLATE = f"{SCHEME}{TASK_PREFIX}{{taskId}}"
TASK_DESCRIPTION = "A task's state and result, as get_task_status returns it."

Reader = Callable[["Engine"], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Resource:
    """A readable resource: `reynolds://{name}` over MCP, `/mcp/resources/{name}` over REST."""

    name: str
    description: str
    mime_type: str
    reader: Reader

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.name}"


@dataclass(frozen=True, slots=True)
class Contents:
    """What reading a resource gave."""

    uri: str
    mime_type: str
    text: str


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _pools(engine: Engine) -> str:
    return _json({"pools": engine.pool_status()})


async def _metrics(engine: Engine) -> str:
    engine.pool_status()  # refreshes the pool gauges
    return engine.metrics.render().decode()


async def _patterns(engine: Engine) -> str:
    patterns = [{"name": name, "keywords": list(keys)} for name, keys in PATTERN_KEYWORDS.items()]
    patterns.append({"name": "default", "keywords": []})
    return _json(
        {
            "patterns": patterns,
            "matching": "the first pattern with a keyword inside the task type (lower-cased) "
            "wins; no match is default",
            **await failure_patterns(engine.store),
        }
    )


async def _loop_prevention(engine: Engine) -> str:
    level = engine.settings.loop_confidence
    recent = reversed(engine.dispatch.loops.recent)
    return _json(
        {
            "confidence": level,
            "formula": "confidence = 1 - rho ** evidence; work stops when it reaches the level",
            "detectors": {
                name: {"rho": rho, "evidenceToStop": loops.evidence_needed(name, level)}
                for name, rho in loops.CHANCE.items()
                if name in loops.ACTIVE_DETECTORS
            },
            "detections": [{**found, "at": iso(found["at"])} for found in recent],
            **_guards_view(engine),
        }
    )


def _guards_view(engine: Engine) -> dict[str, Any]:
    """Breaker states per pool, downstreams with a breaker or a limit, recent transitions."""
    guards = engine.dispatch.guards
    rules, now = guards.rules, guards.clock()
    return {
        "breakers": {
            "rules": {
                "failuresInRow": rules.consecutive,
                "windowSeconds": rules.window_s,
                "windowFailureRatio": rules.window_ratio,
                "windowMinAttempts": rules.window_min,
                "cooldownSeconds": rules.cooldown_s,
                "maxCooldownSeconds": rules.max_cooldown_s,
            },
            "pools": {pool: guards.pool_view(pool, now) for pool in guards.pools},
            "transitions": [{**t, "at": iso(t["at"])} for t in reversed(guards.recent)],
        },
        "adaptiveConcurrency": guards.adaptive,
        "downstreams": guards.downstream_views(now),
    }


async def _personality(engine: Engine) -> str:
    return _json({**PERSONALITY, "personality": engine.settings.personality})


async def _experiments(engine: Engine) -> str:
    return _json({"experiments": await Experiments(engine).recent()})


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in [
        Resource(
            "agent-pools",
            "The agent pools: replicas, busy slots, queue depth.",
            JSON_TYPE,
            _pools,
        ),
        Resource("metrics", "The Prometheus metrics.", PROMETHEUS_TYPE, _metrics),
        Resource(
            "patterns",
            "The decomposition patterns and the task-type keywords that select them; the "
            "failure patterns learned from the newest failed attempts.",
            JSON_TYPE,
            _patterns,
        ),
        Resource(
            "loop-prevention",
            "Loop prevention: its level and detectors, and the latest loops it stopped, "
            "newest first, with their evidence.",
            JSON_TYPE,
            _loop_prevention,
        ),
        Resource(
            "experiments",
            "The experiments run (run_experiment), newest first: name, mode, status, winner "
            "and speed-up; GET /experiments/{id} has each report.",
            JSON_TYPE,
            _experiments,
        ),
        Resource(
            "reynolds-personality",
            "The Reynolds voice: its traits, charm levels and examples, and whether it is on "
            "(REYNOLDS_PERSONALITY).",
            JSON_TYPE,
            _personality,
        ),
    ]
}


def listing() -> list[dict[str, str]]:
    """`[{uri, name, mimeType, description}]`, the task template last."""
    rows = [
        {"uri": r.uri, "name": r.name, "mimeType": r.mime_type, "description": r.description}
        for r in RESOURCES.values()
    ]
    rows.append(
        {
            "uri": TASK_TEMPLATE,
            "name": f"{TASK_PREFIX}{{taskId}}",
            "mimeType": JSON_TYPE,
            "description": TASK_DESCRIPTION,
        }
    )
    return rows


def name_of(uri: str) -> str:
    """The resource name inside a `reynolds://` URI; NotFound for any other URI."""
    if not uri.startswith(SCHEME):
        raise NotFound(f"unknown resource {uri!r}: URIs start with {SCHEME}", uri=uri)
    return uri[len(SCHEME) :]


async def read(engine: Engine, name: str) -> Contents:
    """Read `name` (`agent-pools`, ..., `tasks/{taskId}`); NotFound if there is none."""
    if name.startswith(TASK_PREFIX):
        task_id = name[len(TASK_PREFIX) :]
        if not task_id or "/" in task_id:
            raise NotFound(f"no task {task_id!r}", taskId=task_id)
        return Contents(f"{SCHEME}{name}", JSON_TYPE, _json(await engine.result(task_id)))
    resource = RESOURCES.get(name)
    if resource is None:
        raise NotFound(
            f"unknown resource {SCHEME}{name}",
            availableResources=[r.uri for r in RESOURCES.values()] + [TASK_TEMPLATE],
        )
    return Contents(resource.uri, resource.mime_type, await resource.reader(engine))
