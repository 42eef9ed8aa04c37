"""Tables, as SQLAlchemy Core. Times are UNIX epoch seconds (floats); JSON columns hold the
task's own structures. Alembic migrations in `migrations/` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("priority", String(16), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("spec", JSON, nullable=False),  # the TaskSpec as submitted (camelCase)
    Column("strategy", JSON, nullable=False),  # the Strategy in force (camelCase)
    Column("plan", JSON, nullable=True),
    Column("metrics", JSON, nullable=True),
    Column("message", Text, nullable=True),
    Column("token_name", String(100), nullable=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # The server (see `servers`) that runs the task; set when a row is inserted and when a
    # server claims the task to resume it, never by other updates. NULL: written before 0004.
    Column("owner", String(64), nullable=True),
    # Raised by every claim (0012): a server's writes of the task count only while the owner
    # and this epoch are still those of its own claim (see ownership.py).
    Column("owner_epoch", Integer, nullable=False, server_default=text("0")),
    # A cancel asked of another server sharing the store (0013): the owner cancels the task.
    Column("cancel_requested_at", Float, nullable=True),
    # The input's fingerprint, and how the task failed (see services/resubmissions.py).
    Column("fingerprint", String(64), nullable=True),
    Column("outcome", String(64), nullable=True),
    # Why it ended so, beyond its status: budget_exceeded, deadline_exceeded (0008).
    Column("reason", String(32), nullable=True),
    # The task whose action submitted it, and how many such generations it is below a task
    # submitted by hand (0008; NULL: by hand).
    Column("parent_id", String(64), nullable=True),
    Column("depth", Integer, nullable=True),
)

subtasks = Table(
    "subtasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("id", String(1000), primary_key=True),
    Column("seq", Integer, nullable=False),  # position in the task's decomposition
    Column("component", Text, nullable=True),
    Column("step", String(100), nullable=True),
    Column("requested_agent", String(100), nullable=True),
    Column("agent_type", String(100), nullable=True),  # the pool it ran on
    Column("depends_on", JSON, nullable=False),
    Column("spec", JSON, nullable=False),  # action and run options (camelCase)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("exit_code", Integer, nullable=True),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("reason", String(64), nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("pid", Integer, nullable=True),
    Column("pid_start", BigInteger, nullable=True),  # /proc/PID/stat start time, in ticks
    Column("detail", JSON, nullable=True),  # {"loop": verdict} when loop prevention stopped it
)

attempts = Table(
    "attempts",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("subtask_id", String(1000), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("agent_type", String(100), nullable=True),
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("reason", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # A failed attempt's class (core/failures.py): timeout, connection, not_found, ...
    Column("failure_class", String(32), nullable=True),
    # What an llm attempt used, as its endpoint counted, and its cost by the prices (0009).
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("cost", Float, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("subtask_id", String(1000), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("data", JSON, nullable=True),
    Column("at", Float, nullable=False),
    # The server that wrote it, on a store servers share (0015; NULL on SQLite): each
    # server's events commit in `seq` order, so others follow them by a cursor per server.
    Column("server", String(64), nullable=True),
    Index("ix_events_task_seq", "task_id", "seq"),
    Index("ix_events_server_seq", "server", "seq"),
)

# Durations kept per key for the simulator's quantiles.
RECENT_DURATIONS = 64

durations = Table(
    "durations",
    metadata,
    Column("key", String(1000), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("failures", Integer, nullable=False, default=0),
    Column("mean_s", Float, nullable=False),
    Column("m2", Float, nullable=False, default=0.0),  # Welford's running sum of squares
    # The latest RECENT_DURATIONS durations, oldest first: the quantiles a simulation draws
    # from (0011; None in a row written before it).
    Column("recent", JSON, nullable=True),
    Column("last_s", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One append-only row per tool call and per action attempt. Kept small: no output text, argv
# redacted, environment variable names without their values.
audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),  # when the call or attempt started
    Column("kind", String(16), nullable=False),  # tool | action
    Column("token_name", String(100), nullable=True),
    Column("tool", String(64), nullable=True),
    Column("action", String(16), nullable=True),  # the action's kind: shell, python, http, ...
    Column("pool", String(100), nullable=True),
    Column("task_id", String(64), nullable=True),
    Column("subtask_id", String(1000), nullable=True),
    Column("attempt", Integer, nullable=True),
    Column("argv", JSON, nullable=True),
    Column("cwd", Text, nullable=True),
    Column("env_names", JSON, nullable=True),
    Column("decision", String(16), nullable=False),  # allowed | denied | rejected
    Column("outcome", String(32), nullable=True),
    Column("detail", Text, nullable=True),  # why denied or rejected
    Column("exit_code", Integer, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("output_bytes", BigInteger, nullable=True),
    Index("ix_audit_at", "at"),
    Index("ix_audit_task_at", "task_id", "at"),
)

# One append-only row per attempt: the pool routing chose, the scores behind it and why.
orchestration_decisions = Table(
    "orchestration_decisions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("subtask_id", String(1000), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("pool", String(100), nullable=False),
    Column("selection", String(32), nullable=False),
    Column("scores", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_decisions_task_subtask", "task_id", "subtask_id"),
)

# One row per change of a pool's replica count, manual or automatic.
scaling_events = Table(
    "scaling_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pool", String(100), nullable=False),
    Column("from_replicas", Integer, nullable=False),
    Column("to_replicas", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(16), nullable=False),  # manual | auto
    Column("at", Float, nullable=False),
    Index("ix_scaling_events_at", "at"),
)

# One row per orchestrator sharing the database: its id (kept in its REYNOLDS_HOME), where it
# runs and when it last said it was alive. Deleted when it stops cleanly, or by another server
# once its heartbeat is stale.
servers = Table(
    "servers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    # {"at": seconds, "pools": {pool: [waiting, running]}} (0014): the auto-scaler's share.
    Column("load", JSON, nullable=True),
)

# One row: the store's identity, made when the store is created. A REYNOLDS_HOME remembers it,
# so that a database emptied, recreated or swapped for another is noticed at start.
# One row per experiment (services/experiments.py): its scenario as asked, and its report.
experiments = Table(
    "experiments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("scenario", JSON, nullable=False),
    Column("report", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Index("ix_experiments_created", "created_at"),
)

store_identity = Table(
    "store_identity",
    metadata,
    Column("singleton", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("id", String(36), nullable=False),
    Column("created_at", Float, nullable=False),
)

__all__ = [
    "attempts",
    "audit",
    "durations",
    "events",
    "experiments",
    "metadata",
    "orchestration_decisions",
    "scaling_events",
    "servers",
    "store_identity",
    "subtasks",
    "tasks",
]
