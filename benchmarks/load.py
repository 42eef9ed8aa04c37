"""Load: concurrent clients submitting small tasks and polling their status.

Each of `--clients` clients (default 200) loops for `--duration` seconds (default 60): submit
`orchestrate_task` (`wait: false`, one component, one step `["true"]`), then poll `GET
/tasks/{id}` until the task has ended, and again. A 429 is counted and its `Retry-After` waited
out before the same call is made again. Reports calls, successes, 429s, other errors and the
p50/p95/p99 latency of submit and status calls, against the targets: at least 95 % of calls
succeed, every other answer is a 429, status p95 under 50 ms.

Clients do not move in step: each starts at a random moment within the first poll interval,
and every poll interval and think time is drawn uniformly within ±`--jitter` (default 20 %) of
its value, as load tools do for a population of independent users; `--jitter 0` makes every
client start at once and wait exactly, so all 200 stay in lockstep and arrive in waves.
`--seed` fixes the draws.

Each client has a connection of its own. With `--spawn` each also has a token of its own (named
tokens given to the private server), so each is rate-limited as the separate caller it stands
for; against a running server they all present `REYNOLDS_API_TOKEN` and share its limit.

Only 127.0.0.1 is ever contacted: `--spawn` starts a private server there; otherwise the
`REYNOLDS_URL` / `--url` must name 127.0.0.1 and anything else is refused. The run is bounded:
at most 1,000 clients, 600 s and 2,000,000 calls, each call at most 10 s.

    .venv/bin/python benchmarks/load.py --spawn [--duration 60] [--clients 200] [--jitter 0.2]
        [--seed N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness
import httpx

MAX_CLIENTS = 1000
MAX_DURATION_S = 600.0
MAX_CALLS = 2_000_000  # a hard stop whatever the duration
REQUEST_TIMEOUT_S = 10.0
ERROR_BACKOFF_S = 0.1  # after a failed call, so a dead server is not hammered
TARGET_SUCCESS_RATIO = 0.95
TARGET_STATUS_P95_MS = 50.0
ENDED = frozenset({"succeeded", "failed", "cancelled", "planned", "skipped", "loop_blocked"})
SUBMIT_BODY = {
    "arguments": {
        "task": {
            "type": "benchmark-load",
            "components": ["c"],
            "steps": [{"name": "true", "action": {"kind": "shell", "argv": ["true"]}}],
        },
        "wait": False,
    }
}


class Refused(harness.BenchmarkError):
    """The options name something this benchmark will not do."""


@dataclass
class CallStats:
    """What one kind of call (submit or status) got back."""

    calls: int = 0
    successes: int = 0
    limited: int = 0
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def note_error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


@dataclass
class Run:
    """Shared by the clients of one run."""

    deadline: float
    poll_interval_s: float
    think_s: float = 0.0
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    submit: CallStats = field(default_factory=CallStats)
    status: CallStats = field(default_factory=CallStats)
    tasks_submitted: int = 0
    tasks_ended: int = 0

    @property
    def calls(self) -> int:
        return self.submit.calls + self.status.calls

    def spread(self, seconds: float) -> float:
        """`seconds`, drawn within ±jitter of it."""
        return seconds * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def open(self) -> bool:
        return time.monotonic() < self.deadline and self.calls < MAX_CALLS


def loopback_only(url: str) -> str:
    """The URL without a trailing slash, if it is plain http on 127.0.0.1; Refused otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise Refused(f"refusing {url!r}: this benchmark only talks to http://127.0.0.1:<port>")
    return url.rstrip("/")


def check_bounds(args: argparse.Namespace) -> None:
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise Refused(f"--clients must be 1..{MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION_S:
        raise Refused(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} s")
    if not 0 <= args.poll_interval <= 10:
        raise Refused("--poll-interval must be 0..10 s")
    if not 0 <= args.think <= 60:
        raise Refused("--think must be 0..60 s")
    if not 0 <= args.jitter < 1:
        raise Refused("--jitter must be at least 0 and below 1")


@contextlib.contextmanager
def client_tokens(count: int, spawn: bool) -> Iterator[list[str | None]]:
    """One token per client when this run spawns the server (named tokens in a private
    secrets folder, so each client is a caller of its own, rate-limited on its own);
    otherwise everyone presents REYNOLDS_API_TOKEN, if set."""
    if not spawn:
        yield [os.environ.get("REYNOLDS_API_TOKEN") or None] * count
        return
    folder = Path(tempfile.mkdtemp(prefix="reynolds-load-secrets-"))
    tokens = [secrets.token_urlsafe(24) for _ in range(count)]
    lines = [f"load-{i:04d}:{token}\n" for i, token in enumerate(tokens)]
    (folder / "api_tokens.txt").write_text("".join(lines), encoding="utf-8")
    before = os.environ.get("REYNOLDS_SECRETS_DIR")
    # harness.server_for hands this process's environment to the server it starts.
    os.environ["REYNOLDS_SECRETS_DIR"] = str(folder)
    try:
        yield list(tokens)
    finally:
        if before is None:
            os.environ.pop("REYNOLDS_SECRETS_DIR", None)
        else:
            os.environ["REYNOLDS_SECRETS_DIR"] = before
        shutil.rmtree(folder, ignore_errors=True)


async def call(
    http: httpx.AsyncClient,
    run: Run,
    stats: CallStats,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """One call, counted; its JSON on success, None otherwise (a 429 is waited out first)."""
    stats.calls += 1
    started = time.perf_counter()
    try:
        response = await http.request(method, path, headers=headers, json=body)
        payload = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        stats.note_error(f"{type(exc).__name__}: {exc}")
        await pause(run, ERROR_BACKOFF_S)
        return None
    elapsed_s = time.perf_counter() - started
    if response.status_code == 200 and isinstance(payload, dict):
        stats.successes += 1
        stats.latencies_s.append(elapsed_s)
        return payload
    if response.status_code == 429:
        stats.limited += 1
        await pause(run, retry_after_s(response.headers.get("retry-after")))
        return None
    stats.note_error(f"HTTP {response.status_code}: {response.text[:200]}")
    await pause(run, ERROR_BACKOFF_S)
    return None


def retry_after_s(value: str | None) -> float:
    """`Retry-After` in seconds (a number; an HTTP date or nothing counts as 1 s)."""
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


async def pause(run: Run, seconds: float) -> None:
    """Sleep, but never past the run's deadline."""
    remaining = run.deadline - time.monotonic()
    if seconds > 0 and remaining > 0:
        await asyncio.sleep(min(seconds, remaining))


async def client(base_url: str, run: Run, token: str | None) -> None:
    """Submit, poll until the task has ended, repeat, until the run closes; over a connection
    of its own (one pool shared by hundreds of connections costs the client more CPU per call
    than the server spends on it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # trust_env=False: no proxy from the environment may carry this traffic off the machine.
    async with httpx.AsyncClient(
        base_url=base_url, limits=one, timeout=REQUEST_TIMEOUT_S, trust_env=False
    ) as http:
        await submit_and_poll(http, run, headers)


async def submit_and_poll(http: httpx.AsyncClient, run: Run, headers: dict[str, str]) -> None:
    if run.jitter > 0:
        await pause(run, run.rng.uniform(0, run.poll_interval_s))  # a staggered start
    while run.open():
        submitted = await call(
            http, run, run.submit, "POST", "/mcp/tools/orchestrate_task", headers, SUBMIT_BODY
        )
        result = (submitted or {}).get("structuredContent")
        if not isinstance(result, dict):
            continue
        run.tasks_submitted += 1
        status = result.get("status")
        while status not in ENDED and run.open():
            await pause(run, run.spread(run.poll_interval_s))
            polled = await call(http, run, run.status, "GET", f"/tasks/{result['taskId']}", headers)
            if polled is not None:
                status = polled.get("status")
        if status in ENDED:
            run.tasks_ended += 1
        await pause(run, run.spread(run.think_s))


async def drive(base_url: str, tokens: list[str | None], args: argparse.Namespace) -> Run:
    run = Run(
        deadline=time.monotonic() + args.duration,
        poll_interval_s=args.poll_interval,
        think_s=args.think,
        jitter=args.jitter,
        rng=random.Random(args.seed),
    )
    clients = [asyncio.create_task(client(base_url, run, token)) for token in tokens]
    # Calls in flight at the deadline finish within their own timeout.
    done, pending = await asyncio.wait(clients, timeout=args.duration + REQUEST_TIMEOUT_S + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # a bug in the client loop should not pass silently
    return run


def percentile_ms(sorted_s: list[float], pct: float) -> float | None:
    """Nearest-rank percentile in milliseconds, None without samples."""
    if not sorted_s:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_s)))
    return sorted_s[rank - 1] * 1000


def summarise(stats: CallStats, duration_s: float) -> dict[str, Any]:
    latencies = sorted(stats.latencies_s)
    return {
        "calls": stats.calls,
        "successes": stats.successes,
        "rateLimited": stats.limited,
        "otherErrors": stats.errors,
        "callsPerS": stats.calls / duration_s,
        "p50Ms": percentile_ms(latencies, 50),
        "p95Ms": percentile_ms(latencies, 95),
        "p99Ms": percentile_ms(latencies, 99),
        "errorSamples": stats.error_samples,
    }


def verdicts(submit: CallStats, status: CallStats) -> dict[str, Any]:
    calls = submit.calls + status.calls
    successes = submit.successes + status.successes
    ratio = successes / calls if calls else 0.0
    p95 = percentile_ms(sorted(status.latencies_s), 95)
    checks: dict[str, dict[str, Any]] = {
        "successRatio": {
            "value": ratio,
            "target": f">= {TARGET_SUCCESS_RATIO}",
            "pass": ratio >= TARGET_SUCCESS_RATIO,
        },
        "otherErrors": {
            "value": submit.errors + status.errors,
            "target": "0 (everything not a success is a 429)",
            "pass": calls > 0 and submit.errors + status.errors == 0,
        },
        "statusP95Ms": {
            "value": p95,
            "target": f"< {TARGET_STATUS_P95_MS:g}",
            "pass": p95 is not None and p95 < TARGET_STATUS_P95_MS,
        },
    }
    return {"checks": checks, "pass": all(c["pass"] for c in checks.values())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_bounds(args)
    if not args.spawn:
        args.url = loopback_only(args.url)
    with (
        client_tokens(args.clients, args.spawn) as tokens,
        harness.server_for(args) as server,
    ):
        base_url = loopback_only(server.url)
        if not args.spawn:
            tokens = [server.token] * args.clients
        cpu_before = time.process_time()
        started = time.monotonic()
        result = asyncio.run(drive(base_url, tokens, args))
        wall_s = time.monotonic() - started
        client_cpu_s = time.process_time() - cpu_before
    report: dict[str, Any] = {
        "benchmark": "load",
        "clients": args.clients,
        "durationS": args.duration,
        "pollIntervalS": args.poll_interval,
        "thinkS": args.think,
        "jitter": args.jitter,
        "tokens": "one per client" if args.spawn else "shared",
        "machine": harness.machine(),
        "wallS": wall_s,
        "clientCpuS": client_cpu_s,
        "tasksSubmitted": result.tasks_submitted,
        "tasksEnded": result.tasks_ended,
        "submit": summarise(result.submit, args.duration),
        "status": summarise(result.status, args.duration),
        **verdicts(result.submit, result.status),
    }
    if not args.json:
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"load: {report['clients']} clients for {report['durationS']:g} s, poll interval "
        f"{report['pollIntervalS']:g} s, jitter {report['jitter']:g}, tokens {report['tokens']}; "
        f"{report['machine']['cpus']} CPUs, {report['machine']['date']}"
    )
    headers = ["call", "calls", "successes", "429s", "other errors", "calls/s", "p50 ms",
               "p95 ms", "p99 ms"]  # fmt: skip
    rows = [
        [kind, s["calls"], s["successes"], s["rateLimited"], s["otherErrors"], s["callsPerS"],
         s["p50Ms"], s["p95Ms"], s["p99Ms"]]
        for kind, s in (("submit", report["submit"]), ("status", report["status"]))
    ]  # fmt: skip
    print(harness.table(headers, rows))
    print(
        f"tasks submitted {report['tasksSubmitted']}, ended {report['tasksEnded']} "
        f"({report['tasksEnded'] / report['durationS']:.1f}/s); load generator CPU "
        f"{report['clientCpuS']:.1f} s over {report['wallS']:.1f} s"
    )
    for kind in ("submit", "status"):
        for sample in report[kind]["errorSamples"]:
            print(f"  {kind} error: {sample}")
    for name, check in report["checks"].items():
        value = check["value"]
        shown = "-" if value is None else f"{value:.3f}" if isinstance(value, float) else value
        print(f"{'PASS' if check['pass'] else 'FAIL'}  {name} {shown} (target {check['target']})")


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0], repeat=1)
    p.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.5,
        help="seconds between status polls of one task (default 0.5; 0 polls again at once)",
    )
    p.add_argument(
        "--think",
        type=float,
        default=0.5,
        help="seconds a client waits after a task ends before it submits the next (default 0.5)",
    )
    p.add_argument(
        "--jitter",
        type=float,
        default=0.2,
        help="spread of poll intervals and think times, and a staggered start (default 0.2: "
        "±20 %%; 0: every client in lockstep)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the random draws")
    return harness.main_guard(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
