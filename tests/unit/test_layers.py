"""The layering as a contract, read from the source with `ast` (every import, those inside
functions included):

- core imports nothing of Reynolds but core and errors, and no I/O, clock or randomness;
- services import no adapter and no entrypoint (they depend on ports);
- adapters import no entrypoint, and the bootstrap none either: entrypoints build the app
  around what the bootstrap wires, never the other way round;
- no two modules import each other, directly or around a circle;
- no source file is over 600 lines and no function over 80 (migrations aside).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import reynolds

ROOT = Path(reynolds.__file__).parent
# Lowest first: a module may import its own layer and lower ones only.
RANK = {"errors": 0, "core": 0, "settings": 1, "services": 2, "adapters": 3, "bootstrap": 4}
ENTRYPOINTS = 5
# What the core may not import: I/O, processes, clocks, randomness, frameworks.
NOT_IN_CORE = {
    "asyncio", "httpx", "io", "os", "pathlib", "random", "secrets", "shutil", "socket",
    "sqlalchemy", "subprocess", "threading", "time", "uuid", "fastapi", "starlette",
    "uvicorn", "celery", "redis", "psycopg", "mcp", "yaml",
}  # fmt: skip
# Calls that read the clock, whatever they are imported as.
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imported(name: str) -> Iterator[str]:
    """Every module `name` imports (absolute names; `from pkg import mod` counts as pkg.mod
    when that is a module)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in modules() else base


def layer(name: str) -> int:
    parts = name.split(".")
    if len(parts) < 2:
        return ENTRYPOINTS
    return RANK.get(parts[1], ENTRYPOINTS)


def ours(name: str) -> dict[str, set[str]]:
    return {name: {m for m in imported(name) if m in modules() and m != name}}


def graph() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name in modules():
        out |= ours(name)
    return out


def test_no_module_imports_a_higher_layer() -> None:
    upward = [f"{m} -> {d}" for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert upward == []


def test_the_core_imports_only_the_core_and_errors() -> None:
    outside = [
        f"{m} -> {d}"
        for m, deps in graph().items()
        if m.startswith("reynolds.core.")
        for d in deps
        if not (d.startswith("reynolds.core") or d == "reynolds.errors")
    ]
    assert outside == []


def test_the_core_does_no_io_and_reads_no_clock() -> None:
    offenders = []
    for name, path in modules().items():
        if not name.startswith("reynolds.core"):
            continue
        for imported_name in imported(name):
            if imported_name.split(".")[0] in NOT_IN_CORE:
                offenders.append(f"{name} imports {imported_name}")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Attribute) and call.attr in CLOCK_CALLS:
                offenders.append(f"{name} calls .{call.attr}()")
    assert offenders == []


def test_no_modules_import_each_other_around_a_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for d in edges[m]:
            if d not in index:
                visit(d)
                low[m] = min(low[m], low[d])
            elif d in on_stack:
                low[m] = min(low[m], index[d])
        if low[m] == index[m]:
            members = []
            while True:
                x = stack.pop()
                on_stack.discard(x)
                members.append(x)
                if x == m:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for m in edges:
        if m not in index:
            visit(m)
    assert circles == []


def test_the_contract_sees_what_it_checks() -> None:
    # A guard against a checker that finds nothing: known edges of each kind are read.
    edges = graph()
    assert "reynolds.core.models" in edges["reynolds.core.graph"]
    assert "reynolds.bootstrap" in edges["reynolds.entrypoints.http.server"]
    assert any(d.startswith("reynolds.services") for d in edges["reynolds.bootstrap"])
    assert layer("reynolds.entrypoints.cli.app") == ENTRYPOINTS


# -- sizes (STYLE.md): a file a reader can hold, a function that fits on a screen --

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def sources() -> Iterator[tuple[str, Path]]:
    """Every module but the migrations, whose length is the schema's."""
    for name, path in sorted(modules().items()):
        if ".migrations." not in f".{name}.":
            yield name, path


def test_no_source_file_is_over_600_lines() -> None:
    long = {
        name: lines
        for name, path in sources()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert long == {}


def test_no_function_is_over_80_lines() -> None:
    long = {}
    for name, path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert long == {}
