"""Check one migrated tool against the original's own test cases.

    python3 check_tool.py COMPONENT WORKDIR

Loads `WORKDIR/sdk_tools/<module>.py`, checks that it is in the SDK pattern (no controller
class, no import of the controller base, exactly one `@tool` with the original's name and
description) and replays every `(request, expected)` pair of the pristine tool's `TEST_CASES`
against both the original controller and the migrated function. Each side must answer exactly
the expected result. Exit status: 0 all pass, 1 a check failed, 2 usage.
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import catalog
import toolsdk

USAGE = "usage: check_tool.py COMPONENT WORKDIR"


class CheckFailed(Exception):
    """The migrated module is missing, broken or not in the SDK pattern."""


def load_migrated(path: Path, name: str) -> ModuleType:
    """Import the migrated file under `name`, whatever folder it is in."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CheckFailed(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CheckFailed(f"importing {path} fails: {type(exc).__name__}: {exc}") from exc
    return module


def check_shape(path: Path) -> None:
    """The migrated source has no controller class and no import of the controller base."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if catalog.controller_class(tree) is not None or any(
        isinstance(node, ast.ClassDef) and node.name.endswith(catalog.BASE_CLASS)
        for node in tree.body
    ):
        raise CheckFailed(f"{path} still defines a controller class")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == catalog.BASE_MODULE:
            raise CheckFailed(f"{path} still imports {catalog.BASE_MODULE}")


def run_case(function: Any, request: dict[str, Any]) -> Any:
    """The answer of one implementation, or a description of how it crashed."""
    try:
        return function(copy.deepcopy(request))
    except Exception as exc:
        return f"<crashed: {type(exc).__name__}: {exc}>"


def short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check(source: catalog.ToolSource, workdir: Path) -> int:
    """Run every check for one tool, print a line per case; returns the number of failures."""
    migrated_path = workdir / "sdk_tools" / f"{source.module}.py"
    if not migrated_path.is_file():
        raise CheckFailed(
            f"{migrated_path} does not exist: run migrate_tool.py {source.component} {workdir}"
        )
    check_shape(migrated_path)
    original = importlib.import_module(f"tools.{source.module}")
    migrated = load_migrated(migrated_path, f"sdk_tools.{source.module}")

    specs = toolsdk.registered_tools(migrated.__name__)
    if len(specs) != 1:
        raise CheckFailed(f"{migrated_path} registers {len(specs)} tools, expected exactly 1")
    spec = specs[0]
    cls_node = catalog.controller_class(ast.parse(source.path.read_text(encoding="utf-8")))
    assert cls_node is not None  # the catalog only lists modules that have one
    wanted_name = original.ROUTE.rstrip("/").rsplit("/", 1)[-1]
    if spec.name != wanted_name:
        raise CheckFailed(f"the tool is named {spec.name!r}, the route says {wanted_name!r}")
    if spec.description != catalog.description_of(cls_node):
        raise CheckFailed(f"the description {spec.description!r} differs from the docstring")

    controller = getattr(original, source.controller)()
    cases = original.TEST_CASES
    failures = 0
    for number, (request, expected) in enumerate(cases, 1):
        before = run_case(controller.dispatch, request)
        after = run_case(lambda r: toolsdk.call(spec.function, r), request)
        if before == expected and after == expected:
            print(f"  ok    case {number}: {short(request, 70)}")
            continue
        failures += 1
        print(f"  FAIL  case {number}: {short(request, 70)}")
        print(f"        expected {short(expected)}")
        if after != expected:
            print(f"        migrated {short(after)}")
        if before != expected:
            print(f"        original {short(before)} (the pristine tool fails this case too)")
    verdict = "all pass" if not failures else f"{failures} failed"
    print(f"{source.component}: @tool {spec.name!r} — {len(cases)} case(s), {verdict}")
    return failures


def main(argv: list[str]) -> int:
    target = catalog.cli_target(argv, USAGE, __doc__, "check_tool")
    if isinstance(target, int):
        return target
    source, workdir = target
    try:
        return 1 if check(source, workdir) else 0
    except (CheckFailed, SyntaxError) as exc:
        print(f"check_tool: {source.component}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
