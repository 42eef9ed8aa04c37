"""A server starts without importing what only some requests need: matplotlib (an experiment's
chart, about 0.5 s to import) and openai (`llm` actions with an endpoint set, about 0.35 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = (
    "import asyncio, sys\n"
    "from reynolds.bootstrap import build\n"
    "from reynolds.entrypoints.http.app import create_app\n"
    "from reynolds.settings import Settings\n"
    "async def main():\n"
    "    settings = Settings(home=sys.argv[1])\n"
    "    container = await build(settings)\n"
    "    try:\n"
    "        create_app(settings, container=container)\n"
    "        print(sorted(m for m in ('matplotlib', 'openai') if m in sys.modules))\n"
    "    finally:\n"
    "        await container.aclose()\n"
    "asyncio.run(main())\n"
)


def test_a_built_server_has_imported_neither_matplotlib_nor_openai(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REYNOLDS_")}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "home")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().splitlines()[-1] == "[]"
