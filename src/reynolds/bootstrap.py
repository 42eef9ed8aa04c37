"""The one place that wires settings, store, pools, runners and engine together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from reynolds.adapters.actions.http import HttpRunner
from reynolds.adapters.actions.identity import (
    ActionUser,
    check_can_switch,
    check_code_paths,
    check_private,
    resolve_action_user,
)
from reynolds.adapters.actions.llm import LlmRunner
from reynolds.adapters.actions.mcp import McpRunner
from reynolds.adapters.actions.orphans import ProcessOrphans
from reynolds.adapters.actions.python_runner import PythonRunner
from reynolds.adapters.actions.shell import ShellRunner, install_child_watcher
from reynolds.adapters.actions.tags import TAG_NAME, helper_tag
from reynolds.adapters.cache.memory import MemoryCache
from reynolds.adapters.event_store.base import Scope, ScopedEventStore, session_scope
from reynolds.adapters.event_store.memory import MemoryEventStore
from reynolds.adapters.git_worktrees import GitWorktrees
from reynolds.adapters.home import prepare_home, writing
from reynolds.adapters.machine_load import SystemSampler
from reynolds.adapters.metrics import Metrics
from reynolds.adapters.private_dirs import is_reynolds_home, make_private, tighten
from reynolds.adapters.probes import MachineProbes
from reynolds.adapters.secret_files import SecretFiles
from reynolds.adapters.store.integrity import StoreMarker
from reynolds.adapters.store.lock import HomeLock
from reynolds.adapters.store.ownership import home_server_id
from reynolds.adapters.store.sql import SqlStore
from reynolds.core.pools import PoolSet, resource_limits
from reynolds.core.pricing import Price, prices_from
from reynolds.errors import InvalidInput, ReynoldsError
from reynolds.services.analysis import CachedAnalysis, HistoryVersion
from reynolds.services.engine import Engine
from reynolds.services.events import EventBus
from reynolds.services.experiments import Experiments
from reynolds.services.ports import Cache, DistributedExecutor, HealthProbes
from reynolds.settings import Settings

log = logging.getLogger("reynolds")

# How long an analysis answers from the cache at most (learning ends it sooner).
ANALYSIS_TTL_S = 300.0


def load_pools(settings: Settings) -> PoolSet:
    """Read and validate `config/agents.yaml`; the error names the bad key."""
    path = settings.agents_file
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"pool configuration not found: {path}") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read the pool configuration {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a number too long to read
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from exc
    return PoolSet.from_mapping(data, source=str(path))


def load_prices(settings: Settings) -> dict[str, Price]:
    """The llm prices in `config/llm.yaml`, none when it does not exist."""
    path = settings.llm_file
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
        raise InvalidInput(f"cannot read the llm configuration {path}: {exc}") from exc
    return prices_from(data, str(path))


def llm_runner(settings: Settings) -> LlmRunner:
    """The runner of llm actions (and the LLM planner's client) on the configured endpoint."""
    return LlmRunner(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_key(),
        prices=load_prices(settings),
    )


def action_user(settings: Settings, pools: PoolSet) -> ActionUser | None:
    """The user actions run as (REYNOLDS_ACTION_USER), once checked that it exists and that
    this process can switch to it; None for the server's own user. InvalidInput otherwise."""
    if not settings.action_user:
        return None
    user = resolve_action_user(settings.action_user)
    if user.uid == os.geteuid() and user.gid == os.getegid():
        return None
    limits = any(
        resource_limits(
            pool.limits, settings.agent_memory_limit_soft, settings.agent_memory_limit_hard
        ).any
        for pool in pools.pools.values()
    )
    check_can_switch(settings.action_user, user, limits=limits)
    # The forkserver starts with the working directory first on its path, wherever the server
    # itself was started from.
    check_code_paths(settings.action_user, user, [os.getcwd(), *sys.path])
    check_private(
        settings.action_user,
        user,
        {"REYNOLDS_HOME": settings.home, "REYNOLDS_SECRETS_DIR": settings.secrets_dir},
    )
    return user


def make_private_dirs(settings: Settings) -> None:
    """REYNOLDS_HOME and its logs for the server's user alone, shown to take a write
    (HomeNotWritable saying why otherwise), and the secrets folder tightened too."""
    ours = is_reynolds_home(settings.home)
    prepare_home(settings.home, settings.log_dir)
    if ours:
        make_private(settings.home)
    tighten(settings.secrets_dir)


def celery_executor(settings: Settings, pools: PoolSet, server_id: str) -> DistributedExecutor:
    """The Celery backend: one queue per pool on the broker at REYNOLDS_REDIS_URL, and this
    server's inbox there for what the workers tell it."""
    if not settings.redis_url:
        raise InvalidInput(
            "REYNOLDS_BACKEND=celery needs REYNOLDS_REDIS_URL (the broker), e.g. redis://127.0.0.1:6379/0",
            field="REYNOLDS_REDIS_URL",
        )
    # Imported here: the local backend never loads Celery.
    from reynolds.adapters.executors.celery import CeleryExecutor
    from reynolds.adapters.executors.celery_app import make_app
    from reynolds.adapters.executors.celery_channel import Inbox, channel_client, inbox_key

    app = make_app(settings.redis_url, list(pools.pools))
    inbox = Inbox(channel_client(settings.redis_url), inbox_key(server_id))
    return CeleryExecutor(app, lease_s=settings.lease_s, inbox=inbox)


def make_cache(settings: Settings) -> Cache:
    """Redis when REYNOLDS_REDIS_URL is set, else in process."""
    if not settings.redis_url:
        return MemoryCache()
    # Imported here: without REYNOLDS_REDIS_URL nothing loads the Redis client.
    from reynolds.adapters.cache.redis import RedisCache
    from reynolds.adapters.redis_link import RedisLink

    link = RedisLink.from_url(settings.redis_url, "cache", fallback="analyses are computed")
    return RedisCache(link)


def make_event_store(settings: Settings, scope: Scope = session_scope) -> ScopedEventStore:
    """Where MCP streams are kept for resumption: Redis when REYNOLDS_REDIS_URL is set, else
    in process. `scope` names the MCP session being served."""
    if not settings.redis_url:
        return MemoryEventStore(scope=scope)
    from reynolds.adapters.event_store.redis import RedisEventStore
    from reynolds.adapters.redis_link import RedisLink

    link = RedisLink.from_url(
        settings.redis_url, "MCP event store", fallback="MCP events are kept in process"
    )
    return RedisEventStore(link, scope=scope)


@dataclass
class Container:
    """Everything a running server holds."""

    settings: Settings
    store: SqlStore
    engine: Engine
    metrics: Metrics
    lock: HomeLock | None
    bus: EventBus
    # Where the MCP endpoint keeps streams for resumption (closed with the container).
    event_store: ScopedEventStore
    started_at: float = field(default_factory=time.time)
    resumed: list[str] = field(default_factory=list)
    analyses: CachedAnalysis | None = None
    # What the health checks read of the machine and the network.
    probes: HealthProbes = field(default_factory=MachineProbes)

    async def aclose(self) -> None:
        """Stop everything; a step that fails (a failing store's last flush) is logged and the
        others still run."""
        engine = self.engine
        steps: list[Callable[[], Awaitable[object]]] = [engine.autoscaler.stop, engine.close]
        if engine.distributed is not None:
            steps.append(engine.distributed.aclose)
        runners = engine.runners
        steps += [
            runner.aclose
            for runner in (runners.python, runners.http, runners.mcp, runners.llm)
            if runner is not None
        ]
        steps.append(runners.shell.aclose)
        if self.analyses is not None:
            steps.append(self.analyses.cache.aclose)
        steps.append(self.event_store.aclose)
        steps.append(lambda: asyncio.to_thread(self.store.close))
        try:
            for step in steps:
                try:
                    await step()
                except ReynoldsError as exc:
                    log.error("while stopping: %s", exc.message)
                except Exception:
                    log.exception("while stopping")
        finally:
            if self.lock is not None:
                self.lock.release()


async def build(settings: Settings, *, hold_lock: bool = True) -> Container:
    """Start the store and engine and resume unfinished tasks. What stops it (a home it cannot
    write, bad pools, a damaged store) is a ReynoldsError saying why in one line; whatever had
    started by then is stopped again."""
    install_child_watcher()
    make_private_dirs(settings)
    lock = HomeLock(settings.lock_file) if hold_lock else None
    if lock is not None:
        lock.acquire()
    store: SqlStore | None = None
    container: Container | None = None
    try:
        pools = load_pools(settings)
        user = action_user(settings, pools)
        server_id = home_server_id(settings.server_id_file)
        store = SqlStore(
            settings.effective_database_url,
            batch_interval_s=settings.store_batch_interval_s,
            server_id=server_id,
            heartbeat_interval_s=settings.takeover_interval_s / 3,
            # Rows a paused server locked are freed well within the takeover interval.
            stall_s=max(5.0, settings.takeover_interval_s / 3),
            marker=StoreMarker(settings.home),
        )
        await asyncio.to_thread(store.start)
        metrics = Metrics(pools=pools.pools)
        distributed = (
            celery_executor(settings, pools, server_id) if settings.backend == "celery" else None
        )
        engine = Engine(
            settings=settings,
            store=store,
            pools=pools,
            metrics=metrics,
            shell=ShellRunner(action_user=user),
            python=PythonRunner(settings.python_workers, action_user=user),
            http=HttpRunner(),
            secrets=SecretFiles(settings.secrets_dir).read,
            mcp=McpRunner(secrets_dir=settings.secrets_dir),
            llm=llm_runner(settings),
            sampler=SystemSampler(),
            orphans=ProcessOrphans(),
            new_id=lambda: uuid.uuid4().hex,
            workspace=os.getcwd(),
            distributed=distributed,
            git=GitWorktrees(settings.worktrees_dir),
        )
        bus = EventBus(asyncio.get_running_loop())
        store.on_commit(bus.publish_threadsafe)
        container = Container(
            settings, store, engine, metrics, lock, bus, make_event_store(settings)
        )
        version = HistoryVersion(engine)
        store.on_commit(version.observe)
        container.analyses = CachedAnalysis(
            engine, make_cache(settings), version, ttl_s=ANALYSIS_TTL_S
        )
        container.resumed = await engine.resume()
        if store.shared:
            engine.start_takeover()
        await Experiments(engine).interrupted()
        if distributed is not None:
            distributed.start(engine.observe_capacity)
        engine.autoscaler.start(settings.scale_interval_s)
        if container.resumed:
            log.info("resumed %d unfinished task(s)", len(container.resumed))
        return container
    except BaseException:
        if container is not None:
            await container.aclose()
        elif store is not None:
            with contextlib.suppress(ReynoldsError):
                await asyncio.to_thread(store.close)
        if lock is not None:
            lock.release()
        raise


@contextlib.contextmanager
def server_process(settings: Settings) -> Iterator[None]:
    """What a server process holds while it serves: its home (private, writable), the
    scheduler lock, the pid file, and the tag its helpers inherit. Refused in one line
    (ReynoldsError) before anything else: a bad pool file, an action user this process cannot
    switch to, a home it cannot write, another server on the home."""
    make_private_dirs(settings)
    action_user(settings, load_pools(settings))
    lock = HomeLock(settings.lock_file)
    lock.acquire()
    try:
        with writing(settings.home):
            settings.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        # Inherited by the server's helpers (the python workers and whatever they start), so
        # that the next server kills what they left should this one be killed.
        os.environ[TAG_NAME] = helper_tag()
        yield
    finally:
        with contextlib.suppress(OSError):
            if settings.pid_file.read_text(encoding="utf-8").strip() == str(os.getpid()):
                settings.pid_file.unlink()
        lock.release()
