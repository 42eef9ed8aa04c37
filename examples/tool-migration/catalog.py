"""The pristine tools and the components they answer to, plus the scripts' shared argv parsing.

A component is looked up by exact name among the controllers found in `tools/`; it is never
used to build a path, so odd names (spaces, slashes, quotes, a leading dash) are simply unknown.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS_DIR = HERE / "tools"
BASE_MODULE = "tools._controller"
BASE_CLASS = "Controller"


class UsageError(Exception):
    """The command line is wrong or names an unknown component."""


@dataclass(frozen=True)
class ToolSource:
    """One pristine tool: its component name, module, file and controller class."""

    component: str
    module: str
    path: Path
    controller: str


def shown(value: str, limit: int = 80) -> str:
    """A value safe to print: quoted, escaped and cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def controller_class(tree: ast.Module) -> ast.ClassDef | None:
    """The module's class deriving from `Controller`, if exactly one does."""
    found = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(_base_name(base) == BASE_CLASS for base in node.bases)
    ]
    return found[0] if len(found) == 1 else None


def description_of(cls: ast.ClassDef) -> str:
    """The tool description: the first paragraph of the controller's docstring, on one line."""
    doc = ast.get_docstring(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def tools() -> dict[str, ToolSource]:
    """Every tool in `tools/`, by component name (`FooController` answers to `FooTool`)."""
    found: dict[str, ToolSource] = {}
    for path in sorted(TOOLS_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        cls = controller_class(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        if cls is None or not cls.name.endswith(BASE_CLASS):
            continue
        component = cls.name.removesuffix(BASE_CLASS) + "Tool"
        found[component] = ToolSource(component, path.stem, path, cls.name)
    return found


def find(component: str) -> ToolSource:
    """The tool named `component`, or a `UsageError` listing the known ones."""
    known = tools()
    if component not in known:
        raise UsageError(f"unknown component {shown(component)}; known: {', '.join(sorted(known))}")
    return known[component]


def parse_args(argv: list[str], usage: str) -> tuple[str, str] | None:
    """(component, workdir) from argv taken verbatim; None when help was asked for."""
    if argv in (["-h"], ["--help"]):
        return None
    if len(argv) == 3 and argv[0] == "--":
        argv = argv[1:]
    if len(argv) != 2:
        raise UsageError(f"expected 2 arguments, got {len(argv)}\n{usage}")
    component, workdir = argv
    if not workdir.strip():
        raise UsageError("WORKDIR may not be empty")
    return component, workdir


def cli_target(
    argv: list[str], usage: str, doc: str | None, prog: str
) -> tuple[ToolSource, Path] | int:
    """The tool and work folder a script's argv names, or the exit code to return at once:
    0 after printing `doc` for --help, 2 after printing a usage error."""
    try:
        parsed = parse_args(argv, usage)
        if parsed is None:
            print(doc)
            return 0
        component, workdir = parsed
        return find(component), Path(workdir)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _base_name(base: ast.expr) -> str | None:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None
