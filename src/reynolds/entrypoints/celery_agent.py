"""A Celery worker for one pool: `reynolds agent --type code --concurrency 4` execs
`celery -A reynolds.entrypoints.celery_agent worker -Q code …`, which imports this module.

Each job is claimed from the server that dispatched it, its lease renewed by heartbeats while
it runs, and its result reported back, all through that server's inbox on the broker's Redis
(adapters/executors/celery_channel.py): the worker never writes the store. A claim or
heartbeat answered "stale" means the dispatch is fenced: the worker stops the action and drops
the job.

The pool's own rules from this machine's `config/agents.yaml` apply (executables, callables,
hosts, limits), whatever the message says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from celery import Celery, signals

from reynolds.adapters import logs
from reynolds.adapters.executors.celery_app import AGENT_TYPE_ENV, TASK_NAME, make_app
from reynolds.adapters.executors.celery_channel import FAILURES as CHANNEL_FAILURES
from reynolds.adapters.executors.celery_channel import (
    UNANSWERED,
    Stale,
    WorkerChannel,
    channel_client,
)
from reynolds.core.pools import PoolSpec, resource_limits
from reynolds.entrypoints import secret_env
from reynolds.services.actions import Job, JobResult, LocalActions, Runners, denied
from reynolds.services.log_context import bind
from reynolds.services.ports import ActionResult
from reynolds.settings import Settings

log = logging.getLogger("reynolds.worker")

REPORT_DEADLINE_S = 60.0
T = TypeVar("T")


def _settings() -> Settings:
    # `reynolds agent` hands the secrets over instead of leaving them in the environment:
    # read once in the main process, which the pool processes are forked from.
    return Settings(**secret_env.settings_arguments(secret_env.received()))


def _make() -> Celery:
    settings = _settings()
    from reynolds.bootstrap import load_pools

    pools = list(load_pools(settings).pools)
    return make_app(_broker_url(settings), pools)


def _broker_url(settings: Settings) -> str:
    return settings.redis_url or "redis://127.0.0.1:6379/0"


# `celery -A` needs an app at import; the orchestrator builds its own in bootstrap.
app = _make()


class Orchestrator:
    """The worker's side of the lease protocol (claim, heartbeat, result), through the inbox
    of the server that dispatched the job (adapters/executors/celery_channel.py)."""

    def __init__(self, redis_url: str, worker: str) -> None:
        self.worker = worker
        self._channel = WorkerChannel(channel_client(redis_url), worker)

    def claim(self, job: Job) -> float:
        """The lease in seconds. Stale; Unanswered or a Redis failure when not claimed."""
        inbox = _inbox(job)
        lease_s = _retrying(
            lambda: self._channel.claim(
                inbox,
                job.dispatch_id,
                wait=not job.idempotent,
                ttl_s=job.timeout_s + 4 * job.lease_s,
            ),
            deadline_s=job.lease_s,
        )
        return job.lease_s if lease_s is None else lease_s

    def heartbeat(self, job: Job, within_s: float) -> float:
        """Renew the lease: its length in seconds. Stale; Unanswered or a Redis failure when
        no answer came within `within_s`."""
        return _retrying(
            lambda: self._channel.ask(
                _inbox(job), "heartbeat", job.dispatch_id, deadline_s=within_s
            ),
            deadline_s=within_s,
        )

    def report(self, job: Job, result: ActionResult) -> None:
        """Push the result, retrying while Redis is away for up to REPORT_DEADLINE_S."""
        body = JobResult.of(result).model_dump(mode="json", by_alias=True)
        _retrying(
            lambda: self._channel.report(_inbox(job), job.dispatch_id, body),
            deadline_s=REPORT_DEADLINE_S,
        )


def _inbox(job: Job) -> str:
    if not job.inbox:
        raise Stale("the job names no inbox: it was sent by a server of another version")
    return job.inbox


def _retrying(call: Callable[[], T], *, deadline_s: float) -> T:
    """`call`, again while Redis is unreachable, until `deadline_s` has passed."""
    deadline = time.monotonic() + deadline_s
    delay_s = 0.1
    while True:
        try:
            return call()
        except CHANNEL_FAILURES:
            if time.monotonic() + delay_s > deadline:
                raise
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 2.0)


class Agent:
    """What one worker process keeps between jobs: its pool, runners and event loop."""

    def __init__(self, settings: Settings, pool_key: str, worker: str) -> None:
        from reynolds.adapters.actions.http import HttpRunner
        from reynolds.adapters.actions.mcp import McpRunner
        from reynolds.adapters.actions.python_runner import PythonRunner
        from reynolds.adapters.actions.shell import ShellRunner
        from reynolds.adapters.secret_files import SecretFiles
        from reynolds.bootstrap import action_user, llm_runner, load_pools

        # A Celery pool process is daemonic and multiprocessing gives such processes no
        # children; python actions need theirs (daemonic, so they end with this process).
        # Its authkey is billiard's type, which multiprocessing will not pickle: a fresh one.
        config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
        config["daemon"] = False
        key = multiprocessing.process.AuthenticationString  # type: ignore[attr-defined]  # private
        config["authkey"] = key(os.urandom(32))
        pools = load_pools(settings)
        self.pool_key = pools.resolve(pool_key)
        self.pool: PoolSpec = pools.pools[self.pool_key]
        self.limits = resource_limits(
            self.pool.limits, settings.agent_memory_limit_soft, settings.agent_memory_limit_hard
        )
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        # `reynolds agent` checked that the action user exists and can be switched to.
        user = action_user(settings, pools)
        runners = Runners(
            ShellRunner(action_user=user),
            PythonRunner(settings.python_workers, action_user=user),
            HttpRunner(),
            McpRunner(secrets_dir=settings.secrets_dir),
            llm_runner(settings),
        )
        self.actions = LocalActions(runners, os.getcwd(), SecretFiles(settings.secrets_dir).read)
        self.orchestrator = Orchestrator(_broker_url(settings), worker)

    def run(self, payload: dict[str, Any]) -> str:
        """Claim, run with heartbeats, report; what happened, for Celery's log."""
        job = Job.model_validate(payload)
        bind(taskId=job.task_id, subtaskId=job.subtask_id, agentType=job.pool)
        log.debug(
            "attempt received",
            extra={"fields": {"attempt": job.attempt, "dispatchId": job.dispatch_id}},
        )
        if job.pool != self.pool_key:
            return f"ignored: a {job.pool} job reached a {self.pool_key} worker"
        try:
            lease_s = self.orchestrator.claim(job)
        except Stale:
            return "stale: not run"
        except UNANSWERED as exc:
            # Not claimed: the lease runs out and the orchestrator dispatches it again.
            return f"could not claim: {exc}"
        action = self.loop.create_task(self._execute(job))
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeats, args=(job, lease_s, stop, action), daemon=True
        )
        beat.start()
        try:
            result = self.loop.run_until_complete(action)
        except asyncio.CancelledError:
            return "stale: stopped"
        finally:
            stop.set()
            beat.join()
        try:
            self.orchestrator.report(job, result)
        except CHANNEL_FAILURES as exc:
            return f"result not delivered: {exc}"
        return "reported"

    async def _execute(self, job: Job) -> ActionResult:
        return denied(job.action, self.pool, self.pool_key) or await self.actions.run(
            job.action,
            self.pool,
            task_id=job.task_id,
            subtask_id=job.subtask_id,
            attempt=job.attempt,
            timeout_s=job.timeout_s,
            output_cap_bytes=job.output_cap_bytes,
            argv=job.argv,
            arguments=job.arguments,
            pool_key=self.pool_key,
            limits=self.limits,
        )

    def _heartbeats(
        self, job: Job, lease_s: float, stop: threading.Event, action: asyncio.Task[ActionResult]
    ) -> None:
        renewed = time.monotonic()
        while not stop.wait(lease_s / 3):
            try:
                lease_s = self.orchestrator.heartbeat(job, lease_s / 3)
                renewed = time.monotonic()
            except Stale:
                log.warning("dispatch %s is stale; stopping its action", job.dispatch_id)
                self.loop.call_soon_threadsafe(action.cancel)
                return
            except UNANSWERED as exc:
                if time.monotonic() - renewed > lease_s:
                    # The server has dispatched it again by now (its lease ran out), or it is
                    # gone and its successor runs the task: this run is nobody's any more.
                    log.warning(
                        "dispatch %s: no lease renewed for %.0f s (%s); stopping its action",
                        job.dispatch_id,
                        time.monotonic() - renewed,
                        exc,
                    )
                    self.loop.call_soon_threadsafe(action.cancel)
                    return
                log.warning("heartbeat for %s failed: %s", job.dispatch_id, exc)


# -- logs: the worker's own, REYNOLDS_HOME/logs/{worker}.log ---------------------------------

WORKER_LOG_ENV = "REYNOLDS_WORKER_LOG"
QUIET_CELERY_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def _configure_logs(*, rotate: bool) -> None:
    """Every line of this worker — its pool processes' included — as JSON in its own log,
    and on stderr; a home it cannot write leaves it the stderr alone."""
    settings = _settings()
    component = os.environ.get(WORKER_LOG_ENV) or f"{os.environ.get(AGENT_TYPE_ENV)}-worker"
    try:
        logs.configure(
            settings.log_dir, component, console=True, agents_apart=False, rotate=rotate,
            secrets=settings.secret_values(),
        )  # fmt: skip
    except OSError as exc:
        logging.basicConfig(level=logging.INFO)
        log.warning("cannot write %s: %s; logging to stderr only", settings.log_dir, exc)
    # One line per attempt is this module's "attempt done"; Celery's own "received" and
    # "succeeded" lines would add two more to each (its failures still show).
    for name in QUIET_CELERY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@signals.setup_logging.connect  # type: ignore[untyped-decorator]
def _worker_logs(**_: Any) -> None:
    """Connected: Celery leaves logging to this (its own set-up would replace it)."""
    _configure_logs(rotate=True)


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _pool_process_logs(**_: Any) -> None:
    """A forked pool process: the worker's queue and writer thread did not come along."""
    _configure_logs(rotate=False)


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _take_over_from_dead_processes(**_: Any) -> None:
    """A new pool process: kill what the actions of dead ones left (a pool process killed
    mid-action leaves its escaped processes to init), and tag this one's python workers."""
    from reynolds.adapters.actions.tags import TAG_NAME, helper_tag, kill_orphans

    os.environ[TAG_NAME] = helper_tag()
    kill_orphans()


@cache
def _agent(hostname: str) -> Agent:
    settings = _settings()
    pool = os.environ.get(AGENT_TYPE_ENV)
    if not pool:
        raise RuntimeError(f"{AGENT_TYPE_ENV} is not set: start workers with `reynolds agent`")
    return Agent(settings, pool, f"{hostname}/{os.getpid()}")


# Celery is untyped: its decorators return Any.
@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def run_action(self: Any, payload: dict[str, Any]) -> str:
    outcome = _agent(self.request.hostname or "worker").run(payload)
    log.info(
        "attempt done: %s", outcome, extra={"fields": {"dispatchId": payload.get("dispatchId")}}
    )
    return outcome


# -- the health endpoint (the seed's agent ports) ------------------------------------------


def _health_handler(info: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/health":
                self._send(404, {"error": "not found; try /health"})
                return
            ok = _broker_reachable()
            body = {
                "status": "healthy" if ok else "unhealthy",
                "checks": {"broker": "ok" if ok else "unreachable"},
                **info,
                "uptimeSeconds": round(time.time() - info["startedAt"], 1),
            }
            self._send(200 if ok else 503, body)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Health


def _broker_reachable() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1.0)
        return True
    except Exception:
        return False


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _serve_health(sender: Any = None, **_: Any) -> None:
    settings = _settings()
    port = settings.agent_health_port
    if not port:
        return
    hostname = getattr(sender, "hostname", None) or "worker"
    info = {
        "agentType": os.environ.get(AGENT_TYPE_ENV),
        "worker": hostname,
        "pid": os.getpid(),
        "startedAt": time.time(),
    }
    server = ThreadingHTTPServer((settings.host, port), _health_handler(info))
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health endpoint at http://%s:%d/health", settings.host, port)
