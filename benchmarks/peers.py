"""Reynolds beside its peers: the same workloads, the same slots, in one run.

Engines (`--engines`, comma-separated; default all; one whose library is missing is skipped):

- `reynolds-python`, `reynolds-shell`: a private Reynolds server (local backend) running
  python actions (`peers_engines:noop`, `peers_engines:nap`, declared by the `code` pool of a
  private `agents.yaml`) or shell actions (`true`, `sleep`);
- `reynolds-celery`: a private server with `REYNOLDS_BACKEND=celery` on a private Redis and one
  `reynolds agent --type code --concurrency SLOTS` worker, python actions;
- `celery`: plain Celery on a private Redis, one prefork worker of SLOTS processes;
- `dask`: `LocalCluster(n_workers=SLOTS, threads_per_worker=1, processes=True)`;
- `ray`: `ray.init(num_cpus=SLOTS, include_dashboard=False)`;
- `processpool`: `concurrent.futures.ProcessPoolExecutor(SLOTS)`;
- `asyncio`: an event loop spawning `true` / `sleep` behind a semaphore of SLOTS.

Workloads: (a) 2,000 no-op tasks, tasks/s (Reynolds: one task of 2,000 subtasks, `wait:
true`); (b) one no-op task submitted and awaited, 200 times in a row after 20 to warm up, p50
and p95; (c) 17 × sleep 1 s at 5 (ideal 4 s); (d) three levels of five 0.333 s sleeps, each
level after the whole level before (ideal 1 s), at 5; (e) `--sizes` no-op tasks: the time the
submission takes to return (Reynolds: `wait: false`), the makespan, the makespan per task and
the peak RSS. (a), (b) and (e) run at `--slots` (default 2, the cores here), (c) and (d) at 5.
Every run counts the tasks that completed; one that lost a task makes the exit status 1.
Each engine runs in a fresh interpreter of its own (this script with `--in-process`), one
after another; its servers, workers and clusters are stopped before the next one starts.

    .venv/bin/python benchmarks/peers.py [--slots 2] [--repeat 3] [--sizes 1000,10000]
        [--engines reynolds-python,dask,...] [--quick] [--json] [--json-out FILE]

Needs `pip install -e '.[bench]'` for Dask and Ray, and `redis-server` on PATH for Celery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import peers_engines as pe

THROUGHPUT_N = 2000
ROUNDTRIP_CALLS = 200
ROUNDTRIP_WARMUP = 20
MAKESPAN_SLOTS = 5
SLEEPS = (17, 1.0)  # count, seconds: ideal ceil(17 / 5) × 1 s
LEVELS = (3, 5, 0.333)  # levels, width, seconds: ideal 3 × 0.333 s
COMPONENTS_CAP = 10_000  # Reynolds' most components in one task; more go to further steps
POLL_S = 0.05
RUNNING = {"pending", "ready", "running"}
BODY_BYTES = 64 * 1024 * 1024
ENGINES = [
    "reynolds-python", "reynolds-shell", "reynolds-celery", "celery", "dask", "ray",
    "processpool", "asyncio",
]  # fmt: skip
MEASURES = [("makespanS", ".3f"), ("perTaskMs", ".3f"), ("peakMB", ".0f")]  # (e)'s columns
LIBRARIES = ["celery", "redis", "dask", "distributed", "ray", "httpx"]


class Lost(harness.BenchmarkError):
    """A run ended with fewer completed tasks than it submitted."""


# --- Reynolds, driven over its HTTP API -------------------------------------------------------


class ReynoldsSession:
    """A private server: tasks pinned to its `code` pool, `maxConcurrency` = slots."""

    def __init__(self, server: harness.Server, slots: int, kind: str) -> None:
        assert server.env is not None
        self.server = server
        self.slots = slots
        self.kind = kind
        self.client = server.client()
        pid_file = Path(server.env["REYNOLDS_HOME"]) / "reynolds.pid"
        self.server_pid = int(pid_file.read_text().split()[0])
        self.peak_scope = "server process only (VmHWM of REYNOLDS_HOME/reynolds.pid)"
        self.worker_pid: int | None = None

    def action(self, seconds: float | None) -> dict[str, Any]:
        if self.kind == "shell":
            argv = ["true"] if seconds is None else ["sleep", f"{seconds:g}"]
            return {"kind": "shell", "argv": argv}
        if seconds is None:
            return {"kind": "python", "callable": "peers_engines:noop"}
        return {"kind": "python", "callable": "peers_engines:nap", "kwargs": {"seconds": seconds}}

    def task(self, name: str, n: int, seconds: float | None, wait: bool) -> dict[str, Any]:
        """n subtasks of one action: components × one step (× more steps past 10,000)."""
        steps = math.ceil(n / COMPONENTS_CAP)
        per_step = math.ceil(n / steps)
        if steps * per_step != n:
            raise harness.BenchmarkError(f"{n} is not a multiple of {steps} steps")
        action = self.action(seconds)
        spec = {
            "type": f"peers-{name}",
            "description": f"peers.py: {n} subtasks",
            "components": [f"c{i:06d}" for i in range(per_step)],
            "steps": [{"name": f"s{k}", "agent": "code", "action": action} for k in range(steps)],
        }
        return self.arguments(spec, wait)

    def arguments(self, spec: dict[str, Any], wait: bool) -> dict[str, Any]:
        return {
            "task": spec,
            "strategy": {"approach": "parallel_optimized", "maxConcurrency": self.slots},
            "wait": wait,
            "timeoutSeconds": 3600,
        }

    def post(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        response = self.client.post(
            "/mcp/tools/orchestrate_task", json={"arguments": arguments}, timeout=3700
        )
        wall_s = time.perf_counter() - started
        if response.status_code != 200:
            raise pe.Refused(f"HTTP {response.status_code}: {response.text[:300]}")
        payload = response.json()
        result = payload.get("structuredContent")
        if payload.get("isError") or not isinstance(result, dict):
            raise harness.BenchmarkError(f"orchestrate_task failed: {str(payload)[:300]}")
        return result, wall_s

    def _outcome(self, result: dict[str, Any], wall_s: float) -> pe.Outcome:
        metrics = result.get("metrics") or {}
        extra = {"taskId": result.get("taskId"), "serverMakespanS": metrics.get("makespanSeconds")}
        return pe.Outcome(wall_s, succeeded(result), extra=extra)

    def throughput(self, n: int) -> pe.Outcome:
        return self._outcome(*self.post(self.task("throughput", n, None, True)))

    def one(self) -> tuple[float, bool]:
        result, wall_s = self.post(self.task("one", 1, None, True))
        return wall_s, result.get("status") == "succeeded" and succeeded(result) == 1

    def sleeps(self, count: int, seconds: float) -> pe.Outcome:
        return self._outcome(*self.post(self.task("sleeps", count, seconds, True)))

    def levels(self, levels: int, width: int, seconds: float) -> pe.Outcome:
        subtasks = [
            {
                "id": f"l{level}-{j}",
                "agent": "code",
                "action": self.action(seconds),
                "dependsOn": [f"l{level - 1}-{k}" for k in range(width)] if level else [],
            }
            for level in range(levels)
            for j in range(width)
        ]
        spec = {"type": "peers-levels", "subtasks": subtasks}
        return self._outcome(*self.post(self.arguments(spec, True)))

    def bulk(self, n: int) -> pe.Outcome:
        """`wait: false`; then a light poll of `GET /tasks` until it ends, then its result."""
        started = time.perf_counter()
        accepted, accept_s = self.post(self.task("bulk", n, None, False))
        task_id = accepted["taskId"]
        while True:
            tasks = self.client.get("/tasks", params={"limit": 5}).json()["tasks"]
            mine = next((t for t in tasks if t["taskId"] == task_id), None)
            if mine is not None and mine["status"] not in RUNNING:
                break
            if time.perf_counter() - started > pe.GATHER_TIMEOUT_S:
                raise harness.BenchmarkError(f"(e): task {task_id} still running")
            time.sleep(POLL_S)
        makespan_s = time.perf_counter() - started
        response = self.client.get(f"/tasks/{task_id}", timeout=300)
        response.raise_for_status()
        outcome = self._outcome(response.json(), makespan_s)
        outcome.accept_s = accept_s
        return outcome

    def pids(self) -> list[int]:
        return [self.server_pid]

    def all_pids(self) -> list[int]:
        """The server, its python workers, and a Celery worker's processes."""
        tree = pe.process_tree(self.server_pid)
        return tree + (pe.process_tree(self.worker_pid) if self.worker_pid else [])


def succeeded(result: dict[str, Any]) -> int:
    """The subtasks listed as succeeded; when the answer lists only the first ones
    (`truncated`), the server's own count over all of them, `results.counts`."""
    listed = sum(1 for s in result.get("subtasks") or [] if s.get("status") == "succeeded")
    counted = ((result.get("results") or {}).get("counts") or {}).get("succeeded")
    if "truncated" in result and isinstance(counted, int):
        return counted
    return listed if counted is None else min(listed, int(counted))


class ReynoldsEngine(pe.Engine):
    """A private server per session; `backend` local or celery, `kind` python or shell."""

    def __init__(self, name: str, label: str, kind: str, backend: str, max_size: int) -> None:
        self.name, self.label, self.kind, self.backend = name, label, kind, backend
        self.max_size = max_size

    def missing(self) -> str | None:
        if self.backend != "celery":
            return None
        if shutil.which("redis-server") is None:
            return "redis-server is not on PATH"
        return pe.CeleryEngine().missing()

    def environment(self, config: Path, slots: int) -> dict[str, str]:
        env = {
            "REYNOLDS_CONFIG_DIR": str(config),
            "REYNOLDS_PYTHON_WORKERS": str(slots),
            "REYNOLDS_RATE_LIMIT_PER_S": "0",  # (b) sends requests back to back
        }
        if self.max_size > COMPONENTS_CAP:
            env["REYNOLDS_MAX_SUBTASKS"] = str(min(self.max_size, 100_000))
            env["REYNOLDS_MAX_BODY_BYTES"] = str(BODY_BYTES)
        return env

    @contextlib.contextmanager
    def session(self, slots: int) -> Iterator[ReynoldsSession]:
        with (
            tempfile.TemporaryDirectory(prefix="peers-config-") as config,
            contextlib.ExitStack() as stack,
        ):
            pe.write_reynolds_config(Path(config), slots)
            env = self.environment(Path(config), slots)
            if self.backend == "celery":
                import backends

                url = stack.enter_context(backends.redis_server())
                env |= {"REYNOLDS_BACKEND": "celery", "REYNOLDS_REDIS_URL": url}
            spawn = argparse.Namespace(spawn=True, url=harness.DEFAULT_URL)
            server = stack.enter_context(harness.server_for(spawn, env))
            session = ReynoldsSession(server, slots, self.kind)
            stack.callback(session.client.close)
            if self.backend == "celery":
                session.worker_pid = stack.enter_context(pe.reynolds_worker(server, slots))
            yield session


def make_engines(names: list[str], max_size: int) -> list[pe.Engine]:
    reynolds = {
        "reynolds-python": ("Reynolds local, python", "python", "local"),
        "reynolds-shell": ("Reynolds local, shell", "shell", "local"),
        "reynolds-celery": ("Reynolds Celery backend, python", "python", "celery"),
    }
    others: dict[str, type[pe.Engine]] = {
        "celery": pe.CeleryEngine,
        "dask": pe.DaskEngine,
        "ray": pe.RayEngine,
        "processpool": pe.ProcessPoolEngine,
        "asyncio": pe.AsyncioEngine,
    }
    engines: list[pe.Engine] = []
    for name in names:
        if name in reynolds:
            label, kind, backend = reynolds[name]
            engines.append(ReynoldsEngine(name, label, kind, backend, max_size))
        else:
            engines.append(others[name]())
    return engines


# --- the workloads ----------------------------------------------------------------------------


def expect(outcome: pe.Outcome, n: int, what: str) -> pe.Outcome:
    if outcome.done != n:
        raise Lost(f"{what}: {outcome.done} of {n} tasks completed successfully")
    return outcome


def workload_a(session: Any, repeat: int) -> dict[str, Any]:
    runs = [expect(session.throughput(THROUGHPUT_N), THROUGHPUT_N, "(a)") for _ in range(repeat)]
    seconds = [r.seconds for r in runs]
    return {
        "runs": [{"seconds": r.seconds, "done": r.done, **r.extra} for r in runs],
        "medianS": statistics.median(seconds),
        "tasksPerS": THROUGHPUT_N / statistics.median(seconds),
    }


def workload_b(session: Any, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        samples = []
        for i in range(ROUNDTRIP_WARMUP + ROUNDTRIP_CALLS):
            seconds, ok = session.one()
            if not ok:
                raise Lost(f"(b): call {i + 1} did not succeed")
            if i >= ROUNDTRIP_WARMUP:
                samples.append(seconds)
        samples.sort()
        p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
        runs.append({"p50Ms": statistics.median(samples) * 1000, "p95Ms": p95 * 1000})
    return {
        "runs": runs,
        "p50Ms": statistics.median(r["p50Ms"] for r in runs),
        "p95Ms": statistics.median(r["p95Ms"] for r in runs),
    }


def workload_makespan(runs: list[pe.Outcome], ideal_s: float) -> dict[str, Any]:
    listed = [{"seconds": r.seconds, "done": r.done, **r.extra} for r in runs]
    return {
        "runs": listed,
        "medianS": statistics.median(r.seconds for r in runs),
        "idealS": ideal_s,
    }


def bulk_once(session: Any, n: int) -> pe.Outcome:
    """One (e) run, with the peak RSS of the session's processes during it."""
    headline = session.pids()
    tree = getattr(session, "all_pids", session.pids)()
    pe.reset_peaks(sorted(set(headline) | set(tree)))
    outcome = expect(session.bulk(n), n, f"(e) {n}")
    outcome.peak_bytes = pe.peak_bytes(headline)
    if hasattr(session, "all_pids"):
        outcome.extra["treePeakBytes"] = pe.peak_bytes(tree + session.all_pids())
    return outcome


def workload_e(session: Any, sizes: list[int], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"peakScope": session.peak_scope}
    for n in sizes:
        try:
            runs = [bulk_once(session, n) for _ in range(repeat)]
        except pe.Refused as exc:
            out[str(n)] = {"refused": str(exc)}
            continue
        makespan = statistics.median(r.seconds for r in runs)
        accepts = [r.accept_s for r in runs if r.accept_s is not None]
        out[str(n)] = {
            "runs": [
                {"acceptS": r.accept_s, "seconds": r.seconds, "peakBytes": r.peak_bytes, **r.extra}
                for r in runs
            ],
            "acceptS": statistics.median(accepts) if accepts else None,
            "makespanS": makespan,
            "perTaskMs": makespan / n * 1000,
            "peakMB": statistics.median(r.peak_bytes or 0 for r in runs) / 2**20,
        }
    return out


def warm(session: Any, slots: int) -> None:
    """First calls pay for imports, worker start-up and caches: not measured."""
    for _ in range(2):
        expect(session.throughput(8 * slots), 8 * slots, "warm-up")


def run_engine(engine: pe.Engine, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"label": engine.label, "notApplicable": engine.not_applicable}
    reason = engine.missing()
    if reason is not None:
        out["skipped"] = reason
        return out
    say(args, f"{engine.name}: {args.slots} slots for (a), (b), (e)")
    out["load"] = [os.getloadavg()[0]]  # the machine's 1-minute load, at the start and the end
    try:
        started = time.perf_counter()
        with engine.session(args.slots) as session:
            out["startS"] = time.perf_counter() - started
            warm(session, args.slots)
            out["a"] = workload_a(session, args.repeat)
            out["b"] = workload_b(session, args.repeat)
            out["e"] = workload_e(session, args.sizes, args.repeat)
            if args.slots == MAKESPAN_SLOTS:
                run_makespans(session, args, out)
        if args.slots != MAKESPAN_SLOTS:
            say(args, f"{engine.name}: {MAKESPAN_SLOTS} slots for (c), (d)")
            with engine.session(MAKESPAN_SLOTS) as session:
                warm(session, MAKESPAN_SLOTS)
                run_makespans(session, args, out)
    except Exception as exc:  # one engine's failure must not hide the others' results
        out["error"] = f"{type(exc).__name__}: {exc}"
        say(args, f"{engine.name}: FAILED: {out['error']}")
    out["load"].append(os.getloadavg()[0])
    return out


def run_makespans(session: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    count, seconds = SLEEPS
    runs = [expect(session.sleeps(count, seconds), count, "(c)") for _ in range(args.repeat)]
    out["c"] = workload_makespan(runs, math.ceil(count / MAKESPAN_SLOTS) * seconds)
    levels, width, seconds = LEVELS
    total = levels * width
    runs = [
        expect(session.levels(levels, width, seconds), total, "(d)") for _ in range(args.repeat)
    ]
    out["d"] = workload_makespan(runs, levels * seconds)


def say(args: argparse.Namespace, line: str) -> None:
    if not args.json:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# --- the report -------------------------------------------------------------------------------


def cell(result: dict[str, Any], key: str, field: str, fmt: str) -> str:
    if "skipped" in result:
        return "skipped"
    part = result.get(key)
    if part is None:
        return "FAILED" if "error" in result else "-"
    return format(part[field], fmt)


def main_table(results: dict[str, dict[str, Any]], slots: int) -> str:
    headers = [
        "engine", f"(a) tasks/s @{slots}", "(b) p50 ms", "(b) p95 ms", "(c) s, ideal 4",
        "(d) s, ideal 1", "start s", "load",
    ]  # fmt: skip
    rows = [
        [r["label"], cell(r, "a", "tasksPerS", ",.0f"), cell(r, "b", "p50Ms", ".2f"),
         cell(r, "b", "p95Ms", ".2f"), cell(r, "c", "medianS", ".3f"),
         cell(r, "d", "medianS", ".3f"), format(r["startS"], ".2f") if "startS" in r else "-",
         "–".join(f"{x:.1f}" for x in r.get("load", [])) or "-"]
        for r in results.values()
    ]  # fmt: skip
    return harness.table(headers, rows)


def sizes_table(results: dict[str, dict[str, Any]], sizes: list[int]) -> str:
    headers = ["engine", "n", "accept s", "makespan s", "per task ms", "peak RSS MB"]
    rows: list[list[Any]] = []
    for r in results.values():
        for n in sizes:
            row = (r.get("e") or {}).get(str(n))
            if row is None:
                status = "skipped" if "skipped" in r else ("FAILED" if "error" in r else "-")
                rows.append([r["label"], f"{n:,}", status, "", "", ""])
            elif "refused" in row:
                rows.append([r["label"], f"{n:,}", "refused (below)", "", "", ""])
            else:
                accept = "n/a" if row["acceptS"] is None else format(row["acceptS"], ".3f")
                figures = [format(row[k], f) for k, f in MEASURES]
                rows.append([r["label"], f"{n:,}", accept, *figures])
    return harness.table(headers, rows)


def notes(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for r in results.values():
        if "skipped" in r:
            lines.append(f"{r['label']}: skipped: {r['skipped']}")
        if "error" in r:
            lines.append(f"{r['label']}: FAILED: {r['error']}")
        for what, why in r.get("notApplicable", {}).items():
            lines.append(f"{r['label']}: {what} n/a: {why}")
        e = r.get("e") or {}
        if "peakScope" in e:
            lines.append(f"{r['label']}: peak RSS of the {e['peakScope']}")
        for n, row in e.items():
            if isinstance(row, dict) and "refused" in row:
                lines.append(f"{r['label']}: (e) {n} refused: {row['refused']}")
    return lines


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"peers: {m['cores']} cores, {m['cpu']}, Python {m['python']}, {m['platform']}, "
        f"{m['date']}; load average at start {m['loadAverage'][0]:.2f}, at end "
        f"{report['loadAverageAtEnd'][0]:.2f}"
    )
    print(
        f"slots {report['slots']} for (a), (b), (e); {MAKESPAN_SLOTS} for (c), (d); "
        f"medians of {report['repeat']} runs"
    )
    print()
    print(main_table(report["results"], report["slots"]))
    print()
    print(sizes_table(report["results"], report["sizes"]))
    print()
    for line in notes(report["results"]):
        print(f"- {line}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = harness.parser((__doc__ or "").splitlines()[0], repeat=3)
    p.add_argument("--slots", type=int, default=2, help="slots for (a), (b), (e) (default 2)")
    p.add_argument("--sizes", default="1000,10000", help="task counts for (e), comma-separated")
    p.add_argument(
        "--engines", default=",".join(ENGINES), help="a subset of: " + ", ".join(ENGINES)
    )
    p.add_argument("--quick", action="store_true", help="repeat 1, sizes 1000")
    p.add_argument("--json-out", type=Path, help="also write the machine-readable report here")
    # Each engine runs in a process of its own, this script run with --in-process.
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.spawn = True  # every Reynolds server here is a private one
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.quick:
        args.repeat, args.sizes = 1, [1000]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(args.engines) - set(ENGINES))
    if unknown:
        p.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    return args


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One engine in a fresh interpreter: only its own library loaded, and nothing left by
    the engines before it (their threads and imports, a large driver for a pool to fork)."""
    with tempfile.TemporaryDirectory(prefix="peers-") as directory:
        out = Path(directory) / "report.json"
        argv = [
            sys.executable, str(Path(__file__).resolve()), "--in-process", "--json-out", str(out),
            "--engines", name, "--slots", str(args.slots), "--repeat", str(args.repeat),
            "--sizes", ",".join(map(str, args.sizes)), *(["--json"] if args.json else []),
        ]  # fmt: skip
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, check=False)
        if out.is_file():
            return dict(json.loads(out.read_text())["results"][name])
    label = make_engines([name], 0)[0].label
    return {"label": label, "error": f"its process exited {proc.returncode} with no report"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Every engine's workers import the work functions from this folder.
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pe.BENCH_DIR), path]))
    report: dict[str, Any] = {
        "benchmark": "peers",
        "machine": pe.machine(LIBRARIES),
        "slots": args.slots,
        "makespanSlots": MAKESPAN_SLOTS,
        "repeat": args.repeat,
        "sizes": args.sizes,
        "results": {},
    }
    for engine in make_engines(args.engines, max(args.sizes, default=0)):
        report["results"][engine.name] = (
            run_engine(engine, args) if args.in_process else run_child(engine.name, args)
        )
    report["loadAverageAtEnd"] = os.getloadavg()
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    if not args.json and not args.in_process:
        print_report(report)
    failed = [f"{r['label']}: {r['error']}" for r in report["results"].values() if "error" in r]
    if failed:
        report["failed"] = failed
    return report


def main() -> int:
    args = parse_args()
    kept: dict[str, Any] = {}

    def run_and_keep(parsed: argparse.Namespace) -> dict[str, Any]:
        report = kept["report"] = run(parsed)
        return report

    code = harness.main_guard(run_and_keep, args)
    failed = kept.get("report", {}).get("failed")
    if code == 0 and failed:
        print("benchmark failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
