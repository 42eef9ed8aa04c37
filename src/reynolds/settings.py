"""One Settings object, read from the environment and `config/reynolds.env`.

Built in the entrypoints and passed down; nothing else reads the environment for configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reynolds.core.loops import DEFAULT_CONFIDENCE
from reynolds.core.models import MAX_SUBTASKS, SUBTASKS_CEILING
from reynolds.core.pools import parse_bytes
from reynolds.core.reporting import RESULT_SUBTASKS

_PACKAGE_ROOT = Path(__file__).resolve().parent

# Settings that are secrets or may hold one (a URL's password): never kept in a process's
# environment (see entrypoints/secret_env.py). Every SecretStr setting belongs here.
SECRET_SETTINGS = ("api_token", "database_url", "redis_url", "llm_api_key")


def _project_config_dir() -> Path:
    """`config/` in the working directory, else the one beside the source tree."""
    here = Path("config")
    if (here / "agents.yaml").is_file():
        return here
    return _PACKAGE_ROOT.parents[1] / "config"


class Settings(BaseSettings):
    """Everything the server and the CLI can be told; names map to `REYNOLDS_*` variables."""

    model_config = SettingsConfigDict(
        env_prefix="REYNOLDS_",
        env_file="config/reynolds.env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    home: Path = Path(".reynolds")
    database_url: str | None = None
    redis_url: str | None = None
    backend: Literal["local", "celery"] = "local"
    api_token: SecretStr | None = None
    # Comma-separated: browser origins trusted besides the server's own, and Host names
    # (`name` on any port, or `name:port`) accepted besides the server's own.
    allowed_origins: str = ""
    allowed_hosts: str = ""
    personality: Literal["on", "off"] = "on"
    # The server's log lines on stderr too (readable on a terminal, JSON otherwise), besides
    # REYNOLDS_HOME/logs; `reynolds start` turns it off for the server it starts.
    log_console: bool = True
    config_dir: Path = Field(default_factory=_project_config_dir)
    secrets_dir: Path = Path("secrets")
    # The user (`name`, `uid`, `user:group`) shell and python actions run as; unset: the
    # server's own. See adapters/actions/identity.py.
    action_user: str | None = None
    # Comma-separated absolute paths: the git repositories (and directories holding them) a
    # task's `workspace.repo` may name, besides those inside the server's working directory.
    workspace_repos: str = ""

    # An OpenAI-compatible endpoint (its `/v1` URL) for llm actions and the LLM planner, the
    # model asked when an action names none, and its key (else `secrets/llm_api_key.txt`).
    llm_base_url: str | None = Field(None, pattern=r"^https?://")
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    # The LLM planner's answer is cut at this many tokens, and waited for this long.
    llm_plan_max_tokens: int = Field(1024, ge=64, le=100_000)
    llm_plan_timeout_s: float = Field(120.0, gt=0, le=3600)
    # How the planner asks for its JSON schema: OpenAI's `json_schema` response format, or
    # `{"type": "json_object", "schema": ...}` as llama-cpp-python's server takes it.
    llm_schema_format: Literal["json_schema", "json_object"] = "json_schema"

    # Execution defaults (a step's own values win).
    default_timeout_s: float = Field(1800.0, gt=0)
    urgent_timeout_s: float = Field(600.0, gt=0)
    retry_base_s: float = Field(0.5, ge=0)
    retry_cap_s: float = Field(30.0, ge=0)
    output_cap_bytes: int = Field(64 * 1024, ge=1024)
    default_estimate_s: float = Field(1.0, gt=0)
    # Loop prevention stops work when its confidence that the next attempt repeats reaches
    # this (see core/loops.py); 1 would never stop anything, so it stays below.
    loop_confidence: float = Field(DEFAULT_CONFIDENCE, gt=0, lt=1)
    # The most subtasks one task may expand to (steps × components, or explicit subtasks).
    max_subtasks: int = Field(MAX_SUBTASKS, ge=1, le=SUBTASKS_CEILING)
    # The most subtasks (and failures, and ids of the plan's lists) an answer lists; the rest
    # are paged by GET /tasks/{id}/subtasks, at most this many a page.
    result_subtasks: int = Field(RESULT_SUBTASKS, ge=1, le=SUBTASKS_CEILING)
    # The largest request body an authenticated caller may send (every caller when no token is
    # configured); others keep 1 MiB.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Circuit breakers (pools and downstreams): open after this many failures in a row that
    # say the pool or downstream is unwell, let one probe through after the cool-down.
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_cooldown_s: float = Field(30.0, gt=0, le=3600)
    # AIMD limits per downstream on overload answers (429/503, configured patterns); off: a
    # task runs at its maxConcurrency whatever the downstream says.
    adaptive_concurrency: bool = True
    python_workers: int = Field(2, ge=1, le=64)
    # Orchestrators sharing a PostgreSQL store: a server whose heartbeat is older than this
    # is dead, and any other takes over its unfinished tasks (each checks every third of it).
    takeover_interval_s: float = Field(30.0, ge=1, le=3600)
    # The store commits whatever is queued at most this often (group commit).
    store_batch_interval_s: float = Field(0.025, ge=0)

    # Celery backend: a dispatch's lease, renewed by the worker's heartbeats; past it the
    # orchestrator dispatches the subtask again.
    lease_s: float = Field(15.0, gt=0, le=15)
    # A worker's own health endpoint (`reynolds agent --health-port`); 0 turns it off.
    agent_health_port: int = Field(0, ge=0, le=65535)

    # Requests per token (or per client address when no tokens are set); 0 turns it off.
    rate_limit_per_s: float = Field(50.0, ge=0)
    rate_limit_burst: int = Field(100, ge=0)

    cpu_threshold_scale_up: float = Field(
        75.0, validation_alias=AliasChoices("CPU_THRESHOLD_SCALE_UP", "REYNOLDS_CPU_THRESHOLD")
    )
    memory_threshold_scale_up: float = Field(
        80.0,
        validation_alias=AliasChoices("MEMORY_THRESHOLD_SCALE_UP", "REYNOLDS_MEMORY_THRESHOLD"),
    )
    queue_threshold_scale_up: int = Field(
        8, validation_alias=AliasChoices("QUEUE_THRESHOLD_SCALE_UP", "REYNOLDS_QUEUE_THRESHOLD")
    )
    # How often the auto-scaler looks at each pool's queue, CPU and memory.
    scale_interval_s: float = Field(5.0, gt=0)
    # Per action, unless a pool sets its own `limits` (e.g. 2GB / 4GB of address space).
    agent_memory_limit_soft: str | None = Field(
        None, validation_alias=AliasChoices("AGENT_MEMORY_LIMIT_SOFT", "REYNOLDS_MEMORY_LIMIT_SOFT")
    )
    agent_memory_limit_hard: str | None = Field(
        None, validation_alias=AliasChoices("AGENT_MEMORY_LIMIT_HARD", "REYNOLDS_MEMORY_LIMIT_HARD")
    )

    @field_validator("agent_memory_limit_soft", "agent_memory_limit_hard")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)
        return value

    @field_validator("workspace_repos")
    @classmethod
    def _absolute_repos(cls, value: str) -> str:
        for path in filter(None, (p.strip() for p in value.split(","))):
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is not an absolute path")
        return value

    @property
    def allowed_repos(self) -> list[str]:
        return [p.strip() for p in self.workspace_repos.split(",") if p.strip()]

    @property
    def worktrees_dir(self) -> Path:
        """Where task workspaces' worktrees live, one directory per task."""
        return self.home / "worktrees"

    @field_validator("home", "config_dir", "secrets_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def agents_file(self) -> Path:
        return self.config_dir / "agents.yaml"

    @property
    def llm_file(self) -> Path:
        """Prices per model (core/pricing.py); optional."""
        return self.config_dir / "llm.yaml"

    @property
    def pid_file(self) -> Path:
        return self.home / "reynolds.pid"

    @property
    def lock_file(self) -> Path:
        return self.home / "scheduler.lock"

    @property
    def server_id_file(self) -> Path:
        """This orchestrator's id among those sharing a database (see ownership.py)."""
        return self.home / "server_id"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def effective_database_url(self) -> str:
        """The store's URL: SQLite in `home` by default; a PostgreSQL URL without a password
        takes the one in `secrets/db_password.txt`, if that file exists. Holds the password:
        show it only through `render_as_string(hide_password=True)`."""
        if not self.database_url:
            return f"sqlite:///{self.home / 'reynolds.db'}"
        # Imported here: client commands never load SQLAlchemy.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(self.database_url)
        except ArgumentError:
            return self.database_url  # the store names the problem when it connects
        if url.get_backend_name() != "postgresql" or url.password is not None:
            return self.database_url
        path = self.secrets_dir / "db_password.txt"
        password = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        if not password:
            return self.database_url
        return url.set(password=password).render_as_string(hide_password=False)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def token(self) -> str | None:
        """The single API token, from the environment or `secrets/api_token.txt`."""
        if self.api_token is not None:
            return self.api_token.get_secret_value()
        path = self.secrets_dir / "api_token.txt"
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
            return value or None
        return None

    def secret_values(self) -> list[str]:
        """The secret values this process holds, for logs to hide: the API token(s), the
        database's and Redis' passwords, the llm endpoint's key."""
        from urllib.parse import urlsplit

        found = [self.token(), self.llm_key()]
        tokens = self.secrets_dir / "api_tokens.txt"
        if tokens.is_file():
            for line in tokens.read_text(encoding="utf-8").splitlines():
                found.append(line.partition(":")[2].strip() or None)
        for url in (self.effective_database_url, self.redis_url):
            if url:
                found.append(urlsplit(url).password)
        return [value for value in found if value]

    def llm_key(self) -> str | None:
        """The llm endpoint's key, from the environment or `secrets/llm_api_key.txt`."""
        if self.llm_api_key is not None:
            return self.llm_api_key.get_secret_value()
        path = self.secrets_dir / "llm_api_key.txt"
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
            return value or None
        return None
