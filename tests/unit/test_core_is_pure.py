"""The core imports no I/O, clock, randomness or framework."""

from __future__ import annotations

import ast
from pathlib import Path

import reynolds.core

FORBIDDEN = {
    "os",
    "time",
    "random",
    "asyncio",
    "subprocess",
    "socket",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "uuid",
    "threading",
    "datetime.datetime.now",
}


def test_core_modules_import_nothing_that_does_io() -> None:
    root = Path(reynolds.core.__file__).parent
    offenders = []
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for stmt in ast.walk(tree):
            names: list[str] = []
            if isinstance(stmt, ast.Import):
                names = [a.name.split(".")[0] for a in stmt.names]
            elif isinstance(stmt, ast.ImportFrom) and stmt.module:
                names = [stmt.module.split(".")[0]]
            offenders += [f"{path.name}: {n}" for n in names if n in FORBIDDEN]
    assert offenders == []
