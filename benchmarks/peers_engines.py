"""The peers of `peers.py`: the engines a user would pick instead of Reynolds, each driven the
way its documentation shows, and the helpers Reynolds' own sessions there use.

Every engine opens a *session* with a number of slots (worker processes) and offers:

- `throughput(n)`: n no-op tasks submitted, then all awaited;
- `one()`: one no-op task submitted and awaited (seconds, whether it succeeded);
- `sleeps(count, seconds)`: `count` sleeps, `slots` at a time;
- `levels(levels, width, seconds)`: `levels` levels of `width` sleeps, each level depending on
  the whole level before it;
- `bulk(n)`: as `throughput`, also timing how long the submission took to return;
- `pids()`: the processes whose peak resident memory is counted, and `peak_scope`, saying which.

`Batches` writes these once for the engines that submit calls and gather results; each returns
an `Outcome` counting the calls whose result came back as expected, so the caller can check that
none was lost. The work functions (`noop`, `nap`) live here so that every engine's workers
import the same code: `peers.py` puts this folder on `PYTHONPATH` for the processes it starts.

Run as a script, this module is the plain Celery worker `peers.py` starts:

    python benchmarks/peers_engines.py celery-worker BROKER_URL CONCURRENCY QUEUE
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import harness
import yaml

BENCH_DIR = Path(__file__).resolve().parent
GATHER_TIMEOUT_S = 1800.0
WORKER_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
NOOP_ARGV = ["true"]
CELERY_POLL_S = 0.01


# --- the work: the same functions for every engine ------------------------------------------


def noop(i: int = 0) -> int:
    """The no-op task: returns its argument, so a gathered result can be checked."""
    return i


def nap(seconds: float, *after: Any) -> float:
    """Sleep; `after` takes the results of the tasks this one depends on (Dask, Ray)."""
    time.sleep(seconds)
    return seconds


@dataclass
class Outcome:
    """One measured run: its seconds, how many tasks completed successfully, and extras."""

    seconds: float
    done: int
    accept_s: float | None = None
    peak_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Refused(harness.BenchmarkError):
    """The engine refused the submission itself (a size limit, say): a result, not a crash."""


# --- memory: peak resident set sizes read from /proc ----------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def reset_peaks(pids: Sequence[int]) -> None:
    """Start each process's peak RSS (VmHWM) afresh from its current RSS (Linux ≥ 4.0)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_bytes(pids: Sequence[int]) -> int:
    """The sum of the processes' peak RSS (VmHWM); processes already gone count nothing."""
    total = 0
    for pid in set(pids):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if found:
            total += int(found.group(1)) * 1024
    return total


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of `proc` (started with a session of its own), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _count_equal(values: Sequence[Any], expected: Sequence[Any]) -> int:
    return sum(1 for got, want in zip(values, expected, strict=False) if got == want)


def machine(libraries: Sequence[str]) -> dict[str, Any]:
    """Cores, CPU model, Python, date, load average and the peers' versions."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in libraries:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadAverage": os.getloadavg(),
        "versions": versions,
    }


# --- engines ----------------------------------------------------------------------------------


class Engine:
    """An engine: its name, why it cannot run here (None when it can), and its sessions."""

    name = ""
    label = ""
    # Workloads that make no sense for the engine, with the reason.
    not_applicable: ClassVar[dict[str, str]] = {}

    def missing(self) -> str | None:
        return None

    def session(self, slots: int) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError


class Batches:
    """A session of an engine that submits a batch of calls and gathers their results: the
    workloads are written once here, each engine gives `submit` (start the calls, wait for
    none) and `gather` (their results, in order). A call's expected result is its first
    argument (`noop(i)` returns i, `nap(s)` returns s), so every result is checked."""

    peak_scope = "driver + every process below it"
    chains = False  # a call may take the batch before it as arguments, without waiting for it
    accepts = True  # `submit` returns before the work is done

    def submit(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Any:
        raise NotImplementedError

    def gather(self, batch: Any) -> list[Any]:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return process_tree(os.getpid())

    def _timed(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Outcome:
        started = time.perf_counter()
        batch = self.submit(fn, args)
        accepted = time.perf_counter() - started
        values = self.gather(batch)
        seconds = time.perf_counter() - started
        done = _count_equal(values, [a[0] for a in args])
        return Outcome(seconds, done, accepted if self.accepts else None)

    def throughput(self, n: int) -> Outcome:
        return self._timed(noop, [(i,) for i in range(n)])

    def bulk(self, n: int) -> Outcome:
        return self.throughput(n)

    def one(self) -> tuple[float, bool]:
        outcome = self._timed(noop, [(7,)])
        return outcome.seconds, outcome.done == 1

    def sleeps(self, count: int, seconds: float) -> Outcome:
        return self._timed(nap, [(seconds,)] * count)

    def levels(self, levels: int, width: int, seconds: float) -> Outcome:
        """Chained: each level takes the one before as arguments and only the end is
        awaited; otherwise each level is awaited before the next is submitted."""
        started, done = time.perf_counter(), 0
        batches: list[Any] = []
        previous: list[Any] = []
        for _ in range(levels):
            if self.chains:
                batches.append(self.submit(nap, [(seconds, *previous)] * width))
                previous = list(batches[-1])
            else:
                done += self._timed(nap, [(seconds,)] * width).done
        for batch in batches:
            done += _count_equal(self.gather(batch), [seconds] * width)
        return Outcome(time.perf_counter() - started, done)


class ProcessPoolSession(Batches):
    peak_scope = "driver + pool processes"

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool

    def submit(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Any:
        return [self.pool.submit(fn, *a) for a in args]

    def gather(self, batch: Any) -> list[Any]:
        wait_futures(batch, timeout=GATHER_TIMEOUT_S)
        return [None if not f.done() or f.exception() else f.result() for f in batch]


class ProcessPoolEngine(Engine):
    name = "processpool"
    label = "ProcessPoolExecutor"

    @contextlib.contextmanager
    def session(self, slots: int) -> Iterator[ProcessPoolSession]:
        with ProcessPoolExecutor(slots) as pool:
            yield ProcessPoolSession(pool)


class AsyncioSession(Batches):
    """An event loop kept for the session, spawning `true` (noop) or `sleep` (nap) behind a
    semaphore; a call's result is its expected value when the process exited 0."""

    peak_scope = "driver only (its short-lived children are gone before they can be read)"
    accepts = False

    def __init__(self, loop: asyncio.AbstractEventLoop, slots: int) -> None:
        self.loop = loop
        self.slots = slots

    def submit(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Any:
        return [(NOOP_ARGV if fn is noop else ["sleep", f"{a[0]:g}"], a[0]) for a in args]

    def gather(self, batch: Any) -> list[Any]:
        codes = self.loop.run_until_complete(self._spawn_all([argv for argv, _ in batch]))
        return [value if code == 0 else None for (_, value), code in zip(batch, codes, strict=True)]

    async def _spawn_all(self, argvs: Sequence[Sequence[str]]) -> list[int]:
        gate = asyncio.Semaphore(self.slots)

        async def one(argv: Sequence[str]) -> int:
            async with gate:
                proc = await asyncio.create_subprocess_exec(*argv)
                return await proc.wait()

        return list(await asyncio.gather(*(one(argv) for argv in argvs)))

    def pids(self) -> list[int]:
        return [os.getpid()]


class AsyncioEngine(Engine):
    name = "asyncio"
    label = "asyncio subprocesses"
    not_applicable: ClassVar[dict[str, str]] = {
        "accept": "no submission step: the loop spawns each process as a slot frees",
    }

    @contextlib.contextmanager
    def session(self, slots: int) -> Iterator[AsyncioSession]:
        loop = asyncio.new_event_loop()
        try:
            yield AsyncioSession(loop, slots)
        finally:
            loop.close()


class DaskSession(Batches):
    peak_scope = "driver (with the scheduler) + nannies + workers"
    chains = True  # futures as arguments

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Any:
        return self.client.map(fn, *zip(*args, strict=True), pure=False)

    def gather(self, batch: Any) -> list[Any]:
        return list(self.client.gather(batch))


class DaskEngine(Engine):
    name = "dask"
    label = "Dask distributed"

    def missing(self) -> str | None:
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            return f"dask.distributed is not installed ({exc}); pip install -e '.[bench]'"
        return None

    @contextlib.contextmanager
    def session(self, slots: int) -> Iterator[DaskSession]:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=slots,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # A worker's heartbeat racing the scheduler's close logs a harmless traceback;
            # lost work shows in the counts instead.
            silence_logs=logging.CRITICAL,
        )
        try:
            with Client(cluster) as client:  # type: ignore[no-untyped-call]
                yield DaskSession(client)
        finally:
            cluster.close()


class RaySession(Batches):
    peak_scope = "driver + Ray's own processes (GCS, raylet, ...) + workers"
    chains = True  # ObjectRefs as arguments

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.remote = {noop: ray.remote(noop), nap: ray.remote(nap)}

    def submit(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Any:
        remote = self.remote[fn]
        return [remote.remote(*a) for a in args]

    def gather(self, batch: Any) -> list[Any]:
        return list(self.ray.get(batch, timeout=GATHER_TIMEOUT_S))


class RayEngine(Engine):
    name = "ray"
    label = "Ray"

    def missing(self) -> str | None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            return f"ray is not installed ({exc}); pip install -e '.[bench]'"
        return None

    @contextlib.contextmanager
    def session(self, slots: int) -> Iterator[RaySession]:
        import ray

        ray.init(
            num_cpus=slots,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
        try:
            yield RaySession(ray)
        finally:
            ray.shutdown()


# --- plain Celery + Redis ---------------------------------------------------------------------


def celery_app(broker: str) -> Any:
    """The Celery app of both sides, the worker and the driver: Redis as broker and backend."""
    from celery import Celery

    app = Celery("peers", broker=broker, backend=broker)
    app.conf.update(result_expires=3600, broker_connection_retry_on_startup=True)
    app.task(name="peers.noop")(noop)
    app.task(name="peers.nap")(nap)
    return app


def celery_worker_main(broker: str, concurrency: str, queue: str) -> None:
    """`celery worker` with the prefork pool, `concurrency` processes, on `queue`."""
    celery_app(broker).worker_main(
        [
            "worker",
            "--pool=prefork",
            f"--concurrency={int(concurrency)}",
            f"--queues={queue}",
            f"--hostname={queue}@%h",
            "--loglevel=WARNING",
        ]
    )


class CelerySession(Batches):
    """A batch is a `group`; levels are awaited one by one (a chord per level would add
    Celery's chord bookkeeping to the same wait)."""

    peak_scope = "driver + worker processes (not the Redis server)"

    def __init__(self, app: Any, queue: str, worker: subprocess.Popen[bytes]) -> None:
        self.app = app
        self.queue = queue
        self.worker = worker

    def submit(self, fn: Any, args: Sequence[tuple[Any, ...]]) -> Any:
        from celery import group

        name = f"peers.{fn.__name__}"
        return group(self.app.signature(name, args=a, queue=self.queue) for a in args)()

    def gather(self, batch: Any) -> list[Any]:
        # A group's `get` polls every `interval` (0.5 s by default, which would round every
        # makespan up to the next half second); a single result's `get` is woken at once.
        return list(batch.get(timeout=GATHER_TIMEOUT_S, propagate=False, interval=CELERY_POLL_S))

    def one(self) -> tuple[float, bool]:
        """`send_task(...).get()`, as one would await one task (woken, not polled)."""
        started = time.perf_counter()
        value = self.app.send_task("peers.noop", args=(7,), queue=self.queue).get(timeout=60)
        return time.perf_counter() - started, value == 7

    def pids(self) -> list[int]:
        return [os.getpid(), *process_tree(self.worker.pid)]


class CeleryEngine(Engine):
    name = "celery"
    label = "Celery + Redis"

    def missing(self) -> str | None:
        try:
            import celery  # noqa: F401
            import redis  # noqa: F401
        except ImportError as exc:
            return f"celery or redis-py is not installed ({exc})"
        return None

    @contextlib.contextmanager
    def session(self, slots: int) -> Iterator[CelerySession]:
        import backends  # its private redis-server

        queue = f"peers{os.getpid()}x{slots}"
        with backends.redis_server() as url, tempfile.TemporaryFile() as log:
            argv = [sys.executable, str(Path(__file__)), "celery-worker", url, str(slots), queue]
            worker = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            app = celery_app(url)
            try:
                session = CelerySession(app, queue, worker)
                _celery_ready(session, slots, log)
                yield session
            finally:
                stop_group(worker)
                app.close()


def _celery_ready(session: CelerySession, slots: int, log: Any) -> None:
    """Wait until the worker answers, then let each of its processes run something."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while not session.app.control.ping(timeout=0.5):
        if time.monotonic() > deadline or session.worker.poll() is not None:
            log.seek(0)
            tail = log.read()[-1500:].decode(errors="replace")
            raise harness.BenchmarkError(f"the Celery worker did not start: {tail}")
    session.throughput(8 * slots)


# --- Reynolds' private servers (driven by peers.py) --------------------------------------------


def write_reynolds_config(directory: Path, slots: int) -> None:
    """The project's pools, the `code` pool at exactly `slots` replicas and allowed the two
    callables."""
    source = harness.REPO_ROOT / "config"
    config = yaml.safe_load((source / "agents.yaml").read_text())
    code = config["pools"]["code"]
    code["replicas"] = {"min": slots, "max": slots, "initial": slots}
    code["callables"] = ["peers_engines:noop", "peers_engines:nap"]
    (directory / "agents.yaml").write_text(yaml.safe_dump(config))
    if (source / "llm.yaml").is_file():
        shutil.copy(source / "llm.yaml", directory / "llm.yaml")


@contextlib.contextmanager
def reynolds_worker(server: harness.Server, slots: int) -> Iterator[int]:
    """`reynolds agent --type code --concurrency SLOTS`, as the README starts one; its pid."""
    assert server.env is not None
    log = Path(server.env["REYNOLDS_HOME"]) / "worker.log"
    env = {**server.env, "REYNOLDS_PYTHON_WORKERS": "1"}  # one action at a time per process
    argv = [sys.executable, "-m", "reynolds", "agent", "--type", "code"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--concurrency", str(slots)],
            env=env,
            cwd=harness.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        with server.client() as client:
            while code_replicas(client) < slots:
                if time.monotonic() > deadline or proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-1500:]
                    raise harness.BenchmarkError(f"the Reynolds worker did not join: {tail}")
                time.sleep(0.2)
        yield proc.pid
    finally:
        stop_group(proc)


def code_replicas(client: Any) -> int:
    pools = client.get("/status").json()["pools"]
    return int(next(p["replicas"] for p in pools if p["type"] == "code"))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "celery-worker":
        celery_worker_main(*sys.argv[2:5])
    else:
        sys.exit(f"usage: {sys.argv[0]} celery-worker BROKER_URL CONCURRENCY QUEUE")
