"""Agent pool definitions (`config/agents.yaml`), aliases and the routing of a subtask to a pool."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from reynolds.core import wire_values
from reynolds.core.downstreams import OverloadRule
from reynolds.core.environment import env_name_problem
from reynolds.core.mcp_servers import McpServer, check_server_names
from reynolds.core.models import Action, ShellAction
from reynolds.errors import InvalidInput

ActionKind = Literal["shell", "python", "http", "mcp", "llm"]
ACTION_KINDS: tuple[ActionKind, ...] = ("shell", "python", "http", "mcp", "llm")


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Replicas(_Config):
    min: int = Field(1, ge=0, le=1000)
    max: int = Field(3, ge=1, le=1000)
    initial: int = Field(1, ge=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if not self.min <= self.initial <= self.max:
            raise ValueError(
                f"need min ≤ initial ≤ max, got {self.min}, {self.initial}, {self.max}"
            )
        return self


class Capabilities(_Config):
    keywords: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


def parse_bytes(value: str | int) -> int:
    """'2GB', '512MiB', '1024' → bytes; ValueError naming the accepted forms."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    unit = (match.group(2) or "").lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. 512MB, 2GB or 1GiB")
    return int(float(match.group(1)) * _UNITS[unit])


class Limits(_Config):
    """Resource limits applied to each action's process (unset: nothing is applied)."""

    memory_soft: str | int | None = None  # address space, e.g. "2GB"
    memory_hard: str | int | None = None
    cpu_seconds: int | None = Field(None, ge=1)
    open_files: int | None = Field(None, ge=16)

    @field_validator("memory_soft", "memory_hard")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_bytes(value)
        return value


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Limits in bytes, seconds and descriptors; None means not limited."""

    memory_soft: int | None = None
    memory_hard: int | None = None
    cpu_seconds: int | None = None
    open_files: int | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.memory_soft, self.memory_hard, self.cpu_seconds, self.open_files)
        )


def resource_limits(
    limits: Limits, default_soft: str | None, default_hard: str | None
) -> ResourceLimits:
    """A pool's limits, with the AGENT_MEMORY_LIMIT_SOFT/HARD defaults filling the gaps."""
    soft = limits.memory_soft if limits.memory_soft is not None else default_soft
    hard = limits.memory_hard if limits.memory_hard is not None else default_hard
    return ResourceLimits(
        memory_soft=parse_bytes(soft) if soft is not None else None,
        memory_hard=parse_bytes(hard) if hard is not None else None,
        cpu_seconds=limits.cpu_seconds,
        open_files=limits.open_files,
    )


class Scaling(_Config):
    """Auto-scaling thresholds; unset ones come from CPU/MEMORY/QUEUE_THRESHOLD_SCALE_UP."""

    auto: bool = True
    cpu_up_percent: float | None = Field(None, gt=0, le=100)
    memory_up_percent: float | None = Field(None, gt=0, le=100)
    queue_up: int | None = Field(None, ge=1)
    cpu_down_percent: float = Field(30.0, ge=0, le=100)
    memory_down_percent: float = Field(50.0, ge=0, le=100)
    cooldown_seconds: float = Field(30.0, ge=0)


class OverloadConfig(_Config):
    """How an executable says it is overloaded (`overload` in agents.yaml, per executable)."""

    exit_codes: list[int] = Field(default_factory=list, max_length=64)
    patterns: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=32
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return patterns

    def rule(self) -> OverloadRule:
        return OverloadRule(frozenset(self.exit_codes), tuple(self.patterns))


class PoolSpec(_Config):
    """One specialised pool: what it is good at, what it may run, how many replicas."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    philosophy: str = ""
    replicas: Replicas = Field(default_factory=Replicas)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    # Empty means any executable on PATH (contract section 2); otherwise names or paths.
    executables: list[str] = Field(default_factory=list)
    callables: list[str] = Field(default_factory=list)
    # By name: the MCP servers `mcp` actions of this pool may call (none by default).
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict)
    http_hosts: list[str] = Field(default_factory=list)
    # The action kinds this pool may run at all; an empty list denies every action.
    action_kinds: list[ActionKind] = Field(default_factory=lambda: list(ACTION_KINDS))
    # The action pattern subtasks of this pool run; None leaves such tasks `planned`.
    executor: Action | None = None
    scaling: Scaling = Field(default_factory=Scaling)
    limits: Limits = Field(default_factory=Limits)
    # Credentials its actions get as environment variables: {ENV_NAME: file in secrets/}.
    secrets: dict[str, str] = Field(default_factory=dict, max_length=64)
    # Per executable name: the exit codes and output patterns that mean "overloaded, slow
    # down" (adaptive concurrency), e.g. {gh: {patterns: ["API rate limit exceeded"]}}.
    overload: dict[str, OverloadConfig] = Field(default_factory=dict)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, secrets: dict[str, str]) -> dict[str, str]:
        problem = secrets_problem(secrets)
        if problem is not None:
            raise ValueError(problem)
        return secrets

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, McpServer]) -> dict[str, McpServer]:
        check_server_names(servers)
        return servers

    def overload_rules(self) -> dict[str, OverloadRule]:
        return {name: config.rule() for name, config in self.overload.items()}


# The server's own secrets: never handed to an action.
SERVER_SECRET_FILES = frozenset(
    {"api_token.txt", "api_tokens.txt", "db_password.txt", "llm_api_key.txt", "redis_password.txt"}
)
_SECRET_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def secrets_problem(secrets: Mapping[str, str]) -> str | None:
    """Why a pool's `secrets` mapping is refused, or None."""
    for variable, name in secrets.items():
        problem = env_name_problem(variable)
        if problem is not None:
            return problem
        if variable.upper().startswith("REYNOLDS_"):
            return f"{variable!r}: REYNOLDS_ variables are Reynolds' own"
        if not _SECRET_FILE.match(name):
            return f"{name!r} is not a file name in the secrets directory (no / or ..)"
        if name in SERVER_SECRET_FILES:
            return f"{name!r} is the server's own secret: it is never given to an action"
    return None


class PoolsFile(_Config):
    pools: dict[str, PoolSpec]

    @model_validator(mode="after")
    def _aliases_unique(self) -> PoolsFile:
        seen: dict[str, str] = {}
        for key, pool in self.pools.items():
            for name in {key, pool.name, *pool.aliases}:
                if name in seen and seen[name] != key:
                    raise ValueError(f"alias {name!r} is claimed by both {seen[name]} and {key}")
                seen[name] = key
        return self


class PoolSet:
    """The configured pools, by canonical type (`devops`, `platform`, `code`)."""

    def __init__(self, pools: Mapping[str, PoolSpec]) -> None:
        self.pools = dict(pools)
        self._alias: dict[str, str] = {}
        for key, pool in self.pools.items():
            for name in {key, pool.name, *pool.aliases}:
                self._alias[name.lower()] = key

    @classmethod
    def from_mapping(cls, data: Any, source: str = "agents.yaml") -> PoolSet:
        # Executables, hosts and executor argv reach system calls as tool arguments do.
        found = wire_values.problems(data)
        if found:
            where = ".".join(str(p) for p in found[0].loc)
            raise InvalidInput(f"{source}: {where}: {found[0].reason}")
        try:
            parsed = PoolsFile.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"{source}: {where}: {first['msg']}") from exc
        return cls(parsed.pools)

    def resolve(self, name: str) -> str:
        """The canonical pool type for a name or alias; InvalidInput naming the choices."""
        key = self._alias.get(name.lower())
        if key is None:
            raise InvalidInput(
                f"unknown agent {name!r}; known: {', '.join(sorted(self._alias))}", field="agent"
            )
        return key

    def capacity(self) -> dict[str, int]:
        return {key: pool.replicas.initial for key, pool in self.pools.items()}


_WORD = re.compile(r"[a-z0-9]+")


def capability_scores(pools: PoolSet, text: str, executable: str | None) -> dict[str, float]:
    """How well each pool's capabilities match a subtask's words and executable (0..)."""
    words = set(_WORD.findall(text.lower()))
    exe = posixpath.basename(executable).lower() if executable else None
    scores: dict[str, float] = {}
    for key, pool in pools.pools.items():
        score = float(len(words & {k.lower() for k in pool.capabilities.keywords}))
        if exe and exe in {t.lower() for t in pool.capabilities.tools}:
            score += 2.0
        scores[key] = score
    return scores


def preferred_pool(scores: Mapping[str, float]) -> str | None:
    """The single best-matching pool, or None when no pool matches in particular."""
    best = max(scores.values(), default=0.0)
    if best <= 0:
        return None
    winners = [k for k, v in scores.items() if v == best]
    return winners[0] if len(winners) == 1 else None


def action_executable(action: Action) -> str | None:
    return action.argv[0] if isinstance(action, ShellAction) else None
