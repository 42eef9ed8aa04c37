"""A tiny server stand-in: owns a PythonRunner and keeps a worker busy or idle until killed.

    python -m tests.helpers.runner_owner busy|idle MARKER_PATH

`busy` runs a callable that writes its pid to MARKER_PATH and sleeps; `idle` runs one call,
writes the worker's pid to MARKER_PATH and waits with the worker idle.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from reynolds.adapters.actions.python_runner import PythonRunner
from reynolds.core.models import PythonAction
from reynolds.services.ports import ActionContext


async def main(mode: str, marker: str) -> None:
    runner = PythonRunner(1, allowed_callables=lambda _name: True)
    ctx = ActionContext("owner", "owner", 1, 600.0, 4096, ".")
    if mode == "busy":
        kwargs = {"path": marker, "seconds": 600}
        await runner.run(
            PythonAction(
                kind="python", callable="tests.helpers.callables:announce_and_sleep", kwargs=kwargs
            ),
            ctx,
        )
    else:
        result = await runner.run(
            PythonAction(kind="python", callable="tests.helpers.callables:pid"), ctx
        )
        Path(marker).write_text(result.output)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
