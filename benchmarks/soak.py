"""Soak: a private server kept busy for a bounded time while faults are injected, then the ledger.

A server of its own (`reynolds start` on a temporary home, a free port and a token; the local
backend on SQLite, or with `--postgres` a PostgreSQL database of its own made by
tests/helpers/postgres.py) is kept busy for `--duration` seconds (default 600) by `--clients`
concurrent clients (default 4). Each submits a small task, polls it to its end and submits the
next: quick `sh` steps and sleeping python steps that journal every run
(tests/helpers/faults.py), idempotent and never-twice ones, and some that fail before they
succeed (or never do) within their retries.

Meanwhile, at random moments (`--seed`, about every `--fault-gap` seconds), one fault of:

- `action-kill`: SIGKILL a running journal step's process (it is retried, or fails);
- `server-kill`: SIGKILL the server and `reynolds start` it again on the same home (at most
  every `--restart-gap` seconds, default 60; submissions wait while it is down);
- `daemon`: an action that double-forks a daemon; the daemon must be gone after the action;
- `sigterm-timeout`: an action tree ignoring SIGTERM, past its 2 s timeout; all of it killed;
- `redis-restart`: the cache's private `redis-server` (tests/helpers/redis_server.py) stopped
  for two seconds and started again (when `redis-server` is installed; `--no-redis` skips it).

Then submissions stop, every accepted task is waited for (at most `--drain` s), and the ledger
check of tests/reliability (fault_ledger.py) runs over every accepted task: `lost` and
`unexpected` must be 0, `duplicates` within the allowance (expired leases, none on the local
backend, plus the starts a killed server had not recorded), and no process of an action may be
left running (the rig's mark and the servers' `REYNOLDS_ACTION` tags in /proc). Exit 1
otherwise. Everything started is stopped and the temporary folder removed, on Ctrl-C too.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--clients 4] [--seed N]
        [--fault-gap 8] [--restart-gap 60] [--drain 180] [--postgres] [--no-redis] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx

ROOT = Path(__file__).resolve().parent.parent
for _folder in (ROOT, ROOT / "tests" / "e2e", ROOT / "tests" / "reliability"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import fault_ledger  # noqa: E402  (tests/reliability, by its bare name as fault_rig imports it)
import pytest  # noqa: E402  (Rig.start reports a failed start with pytest.fail)
from fault_ledger import TASK_ENDS, Figures, ledger, starts, unrecorded_starts  # noqa: E402
from fault_rig import Rig  # noqa: E402
from test_fault_escapes import STUBBORN  # noqa: E402
from tests.helpers.faults import (  # noqa: E402
    PY,
    journal_step,
    quick_journal_argv,
    read_pid,
    tagged_actions,
    vm_rss_kib,
)
from tests.helpers.polling import wait_until  # noqa: E402
from tests.helpers.postgres import dedicated_database, unreachable  # noqa: E402
from tests.helpers.processes import DAEMON, carrying, is_running  # noqa: E402
from tests.helpers.redis_server import RedisServer  # noqa: E402

MAX_DURATION_S = 3600.0
MAX_CLIENTS = 16
MAX_DRAIN_S = 900.0
POLL_S = 0.3
ERROR_BACKOFF_S = 0.5
ESCAPE_WAIT_S = 30.0  # for a fault's own task to end
GONE_WAIT_S = 10.0  # for what an ended action left to be swept
LEFTOVER_WAIT_S = 15.0
REDIS_DOWN_S = 2.0


class SoakRig(Rig):
    """The reliability suite's Rig, with a token: its calls present it, and a failed start is
    a BenchmarkError rather than a test failure. Every server pid it ran is kept."""

    def __init__(self, root: Path, env: dict[str, str], token: str) -> None:
        super().__init__(root, {**env, "REYNOLDS_API_TOKEN": token})
        self.headers = {"Authorization": f"Bearer {token}"}
        self.server_pids: list[int] = []

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60, headers=self.headers)

    def start(self) -> None:
        try:
            super().start()
        except pytest.fail.Exception as exc:
            raise harness.BenchmarkError(f"`reynolds start` failed: {exc}") from None
        self.server_pids.append(self.pid)


@contextlib.contextmanager
def ledger_token(headers: dict[str, str]) -> Iterator[None]:
    """fault_ledger's `GET /tasks` calls, with the token: its httpx.Client, headers added."""
    real = fault_ledger.httpx
    authed = functools.partial(httpx.Client, headers=headers)
    fault_ledger.httpx = types.SimpleNamespace(Client=authed)  # type: ignore[assignment]
    try:
        yield
    finally:
        fault_ledger.httpx = real


@dataclass
class Soak:
    """Shared by the clients, the fault injector and the RSS watch."""

    rig: SoakRig
    rng: random.Random
    seed: int
    scratch: Path
    redis: RedisServer | None = None
    closing: threading.Event = field(default_factory=threading.Event)
    # Held for each submission, and by a server kill until the restart: no submission is ever
    # in flight while the server dies, so "accepted" is never in doubt.
    submit_lock: threading.Lock = field(default_factory=threading.Lock)
    faults: Counter[str] = field(default_factory=Counter)
    fault_problems: list[str] = field(default_factory=list)
    restarts: int = 0
    unrecorded: int = 0
    peak_rss_kib: int = 0
    submit_errors: int = 0
    poll_errors: int = 0
    last_restart: float = field(default_factory=time.monotonic)

    def submit(self, task: dict[str, Any], **arguments: Any) -> str | None:
        """Rig.submit, serialised with the server kills; None when it was refused."""
        with self.submit_lock:
            try:
                return self.rig.submit(task, **arguments)
            except (AssertionError, httpx.HTTPError):
                self.submit_errors += 1
                return None

    def status(self, http: httpx.Client, task_id: str) -> str | None:
        try:
            answer = http.get(f"/tasks/{task_id}")
            if answer.status_code == 200:
                return str(answer.json()["status"])
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        self.poll_errors += 1
        time.sleep(ERROR_BACKOFF_S)
        return None

    def wait_ended(self, task_id: str, timeout_s: float) -> str | None:
        """The task's end status, None if it had not ended within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self.rig.client() as http:
            while time.monotonic() < deadline:
                status = self.status(http, task_id)
                if status in TASK_ENDS:
                    return status
                time.sleep(POLL_S)
        return None


# -- the workload -------------------------------------------------------------------------


def failing_step(name: str, journal: Path, until: int, retries: int) -> dict[str, Any]:
    """A journalled `sh` step that exits 1 on its attempts before `until`."""
    argv = quick_journal_argv(journal)
    argv[2] += f'; [ "$4" -ge {until} ] || exit 1'
    return {"id": name, "action": {"kind": "shell", "argv": argv}, "retries": retries}


def workload(journal: Path, rng: random.Random) -> dict[str, Any]:
    """One small task: quick steps, sleeping idempotent and never-twice steps, and now and
    then a step that fails before it succeeds (or fails for good)."""
    steps: list[dict[str, Any]] = [
        {"id": f"q{i}", "action": {"kind": "shell", "argv": quick_journal_argv(journal)}}
        for i in range(rng.randint(1, 3))
    ]
    for i in range(rng.randint(1, 2)):
        seconds = round(rng.uniform(0.3, 3.0), 2)
        steps.append(journal_step(f"p{i}", journal, seconds, retries=rng.choice([0, 1, 2])))
    if rng.random() < 0.7:
        seconds = round(rng.uniform(0.3, 2.0), 2)
        steps.append(journal_step("once", journal, seconds, idempotent=False))
    if rng.random() < 0.3:
        steps.append(failing_step("flaky", journal, until=2, retries=2))
    if rng.random() < 0.1:
        steps.append(failing_step("doomed", journal, until=99, retries=1))
    return {"type": "soak", "subtasks": steps}


def client_loop(soak: Soak, number: int) -> None:
    """Submit a task, poll it to its end, again, until the soak closes."""
    rng = random.Random(soak.seed * 1000 + number)
    with soak.rig.client() as http:
        while not soak.closing.is_set():
            task_id = soak.submit(workload(soak.rig.journal, rng))
            if task_id is None:
                time.sleep(ERROR_BACKOFF_S)
                continue
            while soak.status(http, task_id) not in TASK_ENDS and not soak.closing.is_set():
                time.sleep(POLL_S)
            soak.closing.wait(rng.uniform(0, 0.5))


def watch_rss(soak: Soak, stop: threading.Event) -> None:
    """The largest VmRSS of whichever server is running, sampled twice a second."""
    pidfile = soak.rig.server.home / "reynolds.pid"
    while not stop.wait(0.5):
        pid = read_pid(pidfile)
        with contextlib.suppress(OSError, AssertionError):
            if pid is not None:
                soak.peak_rss_kib = max(soak.peak_rss_kib, vm_rss_kib(pid))


# -- the faults ---------------------------------------------------------------------------


def kill_action(soak: Soak) -> bool:
    """SIGKILL one running python journal step of a soak task."""
    runs = soak.rig.runs()
    ended = {(r.task, r.subtask, r.attempt, r.pid) for r in runs if r.kind == "end"}
    live = carrying(soak.rig.mark)
    running = [
        r
        for r in starts(runs)
        if (r.task, r.subtask, r.attempt, r.pid) not in ended
        and r.subtask.startswith(("p", "once"))
        and r.pid in live
    ]
    if not running:
        return False
    victim = soak.rng.choice(running)
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim.pid, signal.SIGKILL)
    return True


def kill_server(soak: Soak) -> bool:
    """SIGKILL the server with its work in flight, count what the store had not recorded of
    the runs, and start it again on the same home."""
    with soak.submit_lock:
        soak.rig.kill()
        soak.unrecorded += unrecorded_starts(soak.rig.store_url, soak.rig.runs())
        soak.rig.start()
    soak.restarts += 1
    soak.last_restart = time.monotonic()
    return True


def escape(soak: Soak, name: str, argv: list[str], pidfile: Path, **options: Any) -> bool:
    """Run one escaping action to its end; every pid it wrote to `pidfile` must then be gone."""
    task = {"type": f"soak-{name}", "subtasks": [{"id": name, "action": {"kind": "shell",
            "argv": argv}, **options}]}  # fmt: skip
    task_id = soak.submit(task)
    if task_id is None:
        return False
    status = soak.wait_ended(task_id, ESCAPE_WAIT_S)
    if status is None:
        soak.fault_problems.append(f"{name}: task {task_id} had not ended in {ESCAPE_WAIT_S:g} s")
    wait_until(pidfile.exists, GONE_WAIT_S)
    pids = [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []
    if not pids:
        soak.fault_problems.append(f"{name}: task {task_id} ({status}) wrote no pids")
    elif not wait_until(lambda: not any(is_running(p) for p in pids), GONE_WAIT_S):
        soak.fault_problems.append(f"{name}: {[p for p in pids if is_running(p)]} outlived it")
    return True


def daemon(soak: Soak) -> bool:
    pidfile = soak.scratch / f"daemon-{soak.faults['daemon']}.pid"
    return escape(soak, "daemon", [PY, "-c", DAEMON, str(pidfile), "0"], pidfile)


def stubborn(soak: Soak) -> bool:
    pidfile = soak.scratch / f"stubborn-{soak.faults['sigterm-timeout']}.pids"
    argv = [PY, "-c", STUBBORN, str(pidfile)]
    return escape(soak, "stubborn", argv, pidfile, timeoutSeconds=2)


def restart_redis(soak: Soak) -> bool:
    """Stop the cache's Redis for a moment (asking for an analysis meanwhile), start it again."""
    assert soak.redis is not None
    soak.redis.stop()
    try:
        task = {"type": "migration", "components": ["a", "b", "c"]}
        with soak.rig.client() as http:
            answer = http.post(
                "/mcp/tools/analyze_orchestration_potential", json={"arguments": {"task": task}}
            )
        if answer.status_code != 200:
            soak.fault_problems.append(f"redis-restart: analysis answered {answer.status_code}")
        time.sleep(REDIS_DOWN_S)
    finally:
        soak.redis.start()
    return True


FAULTS = {  # what each does, and how often it is drawn, relatively
    "action-kill": (kill_action, 5),
    "server-kill": (kill_server, 2),
    "daemon": (daemon, 1),
    "sigterm-timeout": (stubborn, 1),
    "redis-restart": (restart_redis, 1),
}


def inject(soak: Soak, args: argparse.Namespace, deadline: float) -> None:
    """Until the deadline, at random moments, one fault of those that may run now."""
    while True:
        pause = soak.rng.expovariate(1 / args.fault_gap)
        if time.monotonic() + pause >= deadline:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return
        time.sleep(pause)
        kinds = [k for k in FAULTS if k != "redis-restart" or soak.redis is not None]
        if time.monotonic() - soak.last_restart < args.restart_gap:
            kinds.remove("server-kill")
        kind = soak.rng.choices(kinds, [FAULTS[k][1] for k in kinds])[0]
        if FAULTS[kind][0](soak):
            soak.faults[kind] += 1


# -- the end: drain, leftovers, ledger ------------------------------------------------------


def drain(soak: Soak, timeout_s: float) -> dict[str, str]:
    """Wait until every accepted task has ended (at most `timeout_s`); each one's status,
    `running`-like ones included for those that had not."""
    pending = list(soak.rig.accepted)
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    with soak.rig.client() as http:
        while pending:
            for task_id in pending:
                status = soak.status(http, task_id)
                if status is not None:
                    statuses[task_id] = status
            pending = [t for t in pending if statuses.get(t) not in TASK_ENDS]
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    return statuses


def leftovers(rig: SoakRig) -> set[int]:
    """Live processes of the soak's actions: by the rig's mark, and by any server's tag."""
    found = carrying(rig.mark)
    for pid in rig.server_pids:
        found |= tagged_actions(pid)
    return found


def check(soak: Soak) -> Figures:
    with ledger_token(soak.rig.headers):
        return ledger(
            soak.rig.base_url,
            soak.rig.store_url,
            list(soak.rig.accepted),
            journal=soak.rig.runs(),
            lease_expirations=0,  # the local backend has no leases
            unrecorded=soak.unrecorded,
        )


# -- the run ------------------------------------------------------------------------------


def check_bounds(args: argparse.Namespace) -> None:
    if not 0 < args.duration <= MAX_DURATION_S:
        raise harness.BenchmarkError(
            f"--duration must be more than 0 and at most {MAX_DURATION_S:g}"
        )
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise harness.BenchmarkError(f"--clients must be 1..{MAX_CLIENTS}")
    if not 0 < args.drain <= MAX_DRAIN_S:
        raise harness.BenchmarkError(f"--drain must be more than 0 and at most {MAX_DRAIN_S:g}")
    if args.fault_gap < 1 or args.restart_gap < 10:
        raise harness.BenchmarkError("--fault-gap must be at least 1 s, --restart-gap 10 s")
    if args.postgres and (problem := unreachable()):
        raise harness.BenchmarkError(f"--postgres: {problem}")


@contextlib.contextmanager
def soak_rig(args: argparse.Namespace, scratch: Path, seed: int) -> Iterator[Soak]:
    """A started server (and its Redis, its database), stopped and removed on the way out."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if args.postgres:
            env["REYNOLDS_DATABASE_URL"] = stack.enter_context(dedicated_database("reynolds_soak"))
        redis = None
        if not args.no_redis and shutil.which("redis-server"):
            (scratch / "redis").mkdir()
            redis = RedisServer(scratch / "redis", harness.free_port())
            stack.callback(redis.stop)
            redis.start()
            env["REYNOLDS_REDIS_URL"] = redis.url
        rig = SoakRig(scratch / "rig", env, secrets.token_urlsafe(24))
        stack.callback(rig.stop)  # before the database is dropped: callbacks run last first
        rig.start()
        yield Soak(rig=rig, rng=random.Random(seed), seed=seed, scratch=scratch, redis=redis)


def soak_run(soak: Soak, args: argparse.Namespace) -> dict[str, Any]:
    """Clients and faults for the duration, then the drain, leftovers and the ledger."""
    started = time.monotonic()
    stop_watch = threading.Event()
    watcher = threading.Thread(target=watch_rss, args=(soak, stop_watch), daemon=True)
    clients = [
        threading.Thread(target=client_loop, args=(soak, n), daemon=True)
        for n in range(args.clients)
    ]
    watcher.start()
    for thread in clients:
        thread.start()
    try:
        inject(soak, args, started + args.duration)
    finally:
        soak.closing.set()
        for thread in clients:
            thread.join(timeout=30)
    submitting_s = time.monotonic() - started
    statuses = drain(soak, args.drain)
    drained_s = time.monotonic() - started - submitting_s
    wait_until(lambda: not leftovers(soak.rig), LEFTOVER_WAIT_S)
    left = sorted(leftovers(soak.rig))
    figures = check(soak)
    stop_watch.set()
    watcher.join(timeout=5)
    return report(soak, args, figures, statuses, left, submitting_s, drained_s)


def report(
    soak: Soak,
    args: argparse.Namespace,
    figures: Figures,
    statuses: dict[str, str],
    left: list[int],
    submitting_s: float,
    drained_s: float,
) -> dict[str, Any]:
    allowed = figures.lease_expirations + figures.unrecorded_starts
    checks = {
        "lost": figures.lost == 0,
        "unexpected": figures.unexpected == 0,
        "duplicatesWithinAllowance": figures.duplicates <= allowed,
        "nothingLeftRunning": not left,
        "faultsHandled": not soak.fault_problems,
    }
    by_status = Counter(statuses.get(t, "unknown") for t in soak.rig.accepted)
    return {
        "benchmark": "soak",
        "seed": soak.seed,
        "store": "postgresql" if args.postgres else "sqlite",
        "redis": soak.redis is not None,
        "clients": args.clients,
        "machine": harness.machine(),
        "durationS": args.duration,
        "submittingS": submitting_s,
        "drainS": drained_s,
        "tasksAccepted": len(soak.rig.accepted),
        "tasksByStatus": dict(sorted(by_status.items())),
        "subtasks": figures.subtasks,
        "attempts": figures.attempts,
        "runs": figures.runs,
        "faults": {kind: soak.faults.get(kind, 0) for kind in FAULTS},
        "lost": figures.lost,
        "unexpected": figures.unexpected,
        "duplicates": figures.duplicates,
        "allowedDuplicates": allowed,
        "leaseExpirations": figures.lease_expirations,
        "unrecordedStarts": figures.unrecorded_starts,
        "serverRestarts": soak.restarts,
        "peakServerRssMiB": soak.peak_rss_kib / 1024,
        "leftoverProcesses": len(left),
        "leftoverPids": left,
        "faultProblems": soak.fault_problems,
        "submitErrors": soak.submit_errors,
        "pollErrors": soak.poll_errors,
        "problems": figures.problems[:50],
        "checks": checks,
        "pass": all(checks.values()),
    }


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(
        f"soak: {r['clients']} clients for {r['durationS']:g} s, seed {r['seed']}, "
        f"{r['store']}{' + redis cache' if r['redis'] else ''}, local backend; "
        f"{m['cpus']} CPUs, {m['date']}"
    )
    ended = ", ".join(f"{k} {v}" for k, v in r["tasksByStatus"].items())
    faults = ", ".join(f"{k} {v}" for k, v in r["faults"].items())
    rows = [
        ["duration (submitting + drain)", f"{r['submittingS']:.1f} s + {r['drainS']:.1f} s"],
        ["tasks accepted", r["tasksAccepted"]],
        ["tasks ended by status", ended or "-"],
        ["subtasks / attempts / runs", f"{r['subtasks']} / {r['attempts']} / {r['runs']}"],
        ["faults injected", f"{sum(r['faults'].values())} ({faults})"],
        ["lost", r["lost"]],
        ["unexpected", r["unexpected"]],
        ["duplicates", r["duplicates"]],
        ["allowed duplicates", f"{r['allowedDuplicates']} (lease expirations "
         f"{r['leaseExpirations']} + unrecorded starts {r['unrecordedStarts']})"],
        ["server restarts", r["serverRestarts"]],
        ["peak server RSS", f"{r['peakServerRssMiB']:.1f} MiB"],
        ["leftover processes", r["leftoverProcesses"]],
        ["client errors (submit / poll)", f"{r['submitErrors']} / {r['pollErrors']}"],
    ]  # fmt: skip
    print(harness.table(["figure", "value"], rows))
    for problem in [*r["problems"], *r["faultProblems"]]:
        print(f"  {problem}")
    if r["leftoverPids"]:
        print(f"  left running: {r['leftoverPids']}")
    for name, passed in r["checks"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_bounds(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    scratch = Path(tempfile.mkdtemp(prefix="reynolds-soak-"))
    try:
        with soak_rig(args, scratch, seed) as soak:
            result = soak_run(soak, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.json:
        print_report(result)
    return result


def interrupt(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM as KeyboardInterrupt, so that the clean-up runs."""
    raise KeyboardInterrupt


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default, text in (
        ("--duration", float, 600.0, "seconds (default 600)"),
        ("--clients", int, 4, "concurrent clients (default 4)"),
        ("--seed", int, None, "seed for the faults and the tasks (default: drawn, printed)"),
        ("--fault-gap", float, 8.0, "mean seconds between faults (default 8)"),
        ("--restart-gap", float, 60.0, "least seconds between server kills (default 60)"),
        ("--drain", float, 180.0, "most seconds to wait for the accepted tasks (default 180)"),
    ):
        p.add_argument(flag, type=kind, default=default, help=text)
    for flag, text in (
        ("--postgres", "a PostgreSQL database of its own (REYNOLDS_TEST_POSTGRES_URL)"),
        ("--no-redis", "no Redis cache, no redis-restart"),
        ("--json", "print machine-readable results only"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    return p.parse_args()


def main() -> int:
    args = options()
    signal.signal(signal.SIGINT, interrupt)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, interrupt)
    try:
        result = run(args)
    except KeyboardInterrupt:
        print("soak interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (harness.BenchmarkError, httpx.HTTPError, OSError, AssertionError) as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
