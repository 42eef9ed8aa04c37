"""Round-trip time of a no-op python action: median and p95 over 1000 calls on one worker.

Run with `.venv/bin/python benchmarks/python_roundtrip.py [calls]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from reynolds.adapters.actions.python_runner import PythonRunner
from reynolds.core.models import PythonAction
from reynolds.services.ports import ActionContext

NOOP = "os:getpid"


async def measure(calls: int) -> list[float]:
    runner = PythonRunner(workers=1, allowed_callables={NOOP})
    action = PythonAction(kind="python", callable=NOOP)
    ctx = ActionContext(
        task_id="bench",
        subtask_id="noop",
        attempt=1,
        timeout_s=10.0,
        output_cap_bytes=64 * 1024,
        workspace=".",
    )
    try:
        await runner.start()
        for _ in range(50):  # warm the import and the code paths
            await runner.run(action, ctx)
        samples = []
        for _ in range(calls):
            began = time.perf_counter()
            result = await runner.run(action, ctx)
            samples.append(time.perf_counter() - began)
            if not result.ok:
                raise SystemExit(f"the no-op call failed: {result.error}")
        return samples
    finally:
        await runner.aclose()


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    samples = sorted(asyncio.run(measure(calls)))
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    print(f"python action round trip over {calls} calls ({NOOP}, one worker):")
    print(f"  median {statistics.median(samples) * 1000:.3f} ms")
    print(f"  p95    {p95 * 1000:.3f} ms")


if __name__ == "__main__":
    main()
