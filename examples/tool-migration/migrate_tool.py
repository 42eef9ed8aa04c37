"""Rewrite one tool from the controller pattern to the SDK pattern.

    python3 migrate_tool.py COMPONENT WORKDIR

reads `tools/<module>.py` (never modified) and writes `WORKDIR/sdk_tools/<module>.py`, where the
controller class has become a function decorated with `@tool(name=..., description=...)`:

- `handle(self, request)` becomes the tool function, named after the last part of `ROUTE`; the
  description is the first paragraph of the class docstring;
- class attributes become module constants, attributes set in `__init__` become upper-case
  constants, other methods become private module functions, and every `self.x` (or
  `ClassName.x`) is rewritten to the new name;
- `self.require(...)` becomes the SDK's `require(...)` and `BadRequest` becomes `ToolError`.

A controller that keeps state between calls, or uses `self` in a way that has no stateless
equivalent, is refused with the reason. Exit status: 0 migrated, 1 cannot migrate, 2 usage.
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import catalog

USAGE = "usage: migrate_tool.py COMPONENT WORKDIR"
SDK_MODULE = "toolsdk"
# Methods of the base class, and what replaces them in the SDK.
BASE_METHODS = {"require": "require"}
ERROR_RENAMES = {"BadRequest": "ToolError"}
PACKAGE_DOC = '"""Tools migrated to the SDK pattern; see migrate_tool.py."""\n'


class MigrationError(Exception):
    """The tool uses something the SDK pattern has no stateless equivalent for."""


@dataclass
class Summary:
    """What a migration did, for the report line."""

    tool_name: str = ""
    description: str = ""
    constants: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    sdk_names: set[str] = field(default_factory=lambda: {"tool"})


@dataclass
class _Members:
    """The controller class taken apart."""

    constants: list[ast.stmt] = field(default_factory=list)
    helpers: list[ast.FunctionDef] = field(default_factory=list)
    handler: ast.FunctionDef | None = None
    renames: dict[str, str] = field(default_factory=dict)
    receivers: dict[str, str | None] = field(default_factory=dict)


class _SelfRewriter(ast.NodeTransformer):
    """Turns `self.member` / `ClassName.member` into the member's new module-level name."""

    def __init__(self, receiver: str | None, cls_name: str, members: _Members, summary: Summary):
        self.receiver = receiver
        self.cls_name = cls_name
        self.members = members
        self.summary = summary

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        base = node.value
        if isinstance(base, ast.Name) and base.id in (self.receiver, self.cls_name):
            if not isinstance(node.ctx, ast.Load):
                raise MigrationError(
                    f"line {node.lineno}: assigns {base.id}.{node.attr}; a tool function keeps no "
                    "state between calls"
                )
            if node.attr in self.members.renames:
                return ast.copy_location(
                    ast.Name(self.members.renames[node.attr], ast.Load()), node
                )
            if node.attr in BASE_METHODS and base.id == self.receiver:
                self.summary.sdk_names.add(BASE_METHODS[node.attr])
                return ast.copy_location(ast.Name(BASE_METHODS[node.attr], ast.Load()), node)
            raise MigrationError(
                f"line {node.lineno}: uses {base.id}.{node.attr}, which the class does not define"
            )
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if self.receiver is not None and node.id == self.receiver:
            raise MigrationError(
                f"line {node.lineno}: uses {self.receiver} itself, not one of its members"
            )
        if node.id == self.cls_name:
            raise MigrationError(f"line {node.lineno}: refers to the class {self.cls_name} itself")
        return node


def _route(tree: ast.Module) -> tuple[ast.stmt, str]:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["ROUTE"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            name = node.value.value.rstrip("/").rsplit("/", 1)[-1]
            if not name.isidentifier():
                raise MigrationError(f"ROUTE {node.value.value!r} does not end in a tool name")
            return node, name
    raise MigrationError("no ROUTE = '/tools/<name>' string at module level")


def _constant_names(node: ast.Assign | ast.AnnAssign) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = [target.id for target in targets if isinstance(target, ast.Name)]
    if len(names) != len(targets):
        raise MigrationError(f"line {node.lineno}: only simple class attributes can move")
    return names


def _init_constants(init: ast.FunctionDef, members: _Members) -> None:
    receiver = init.args.args[0].arg if init.args.args else None
    for stmt in init.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else None
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == receiver
        ):
            raise MigrationError(
                f"line {stmt.lineno}: __init__ may only set attributes (self.x = value) to migrate"
            )
        if any(isinstance(n, ast.Name) and n.id == receiver for n in ast.walk(stmt.value)):
            raise MigrationError(f"line {stmt.lineno}: an attribute computed from self")
        members.renames[target.attr] = target.attr.upper()
        members.constants.append(
            ast.copy_location(
                ast.Assign([ast.Name(target.attr.upper(), ast.Store())], stmt.value), stmt
            )
        )


def _method(node: ast.FunctionDef, members: _Members) -> None:
    decorators = [d.id if isinstance(d, ast.Name) else None for d in node.decorator_list]
    if decorators not in ([], ["staticmethod"], ["classmethod"]):
        raise MigrationError(f"line {node.lineno}: method {node.name} has unsupported decorators")
    receiver = None
    if decorators != ["staticmethod"]:
        if not node.args.args:
            raise MigrationError(f"line {node.lineno}: method {node.name} takes no self")
        receiver = node.args.args.pop(0).arg
    node.decorator_list = []
    members.receivers[node.name] = receiver
    if node.name == "handle":
        members.handler = node
        return
    members.renames[node.name] = node.name if node.name.startswith("_") else f"_{node.name}"
    members.helpers.append(node)


def _take_apart(cls: ast.ClassDef) -> _Members:
    members = _Members()
    for index, node in enumerate(cls.body):
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if index == 0 and is_doc:
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            for name in _constant_names(node):
                members.renames[name] = name
            members.constants.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == "__init__":
            _init_constants(node, members)
        elif isinstance(node, ast.FunctionDef):
            _method(node, members)
        else:
            kind = type(node).__name__
            raise MigrationError(
                f"line {node.lineno}: the class body has a {kind} that cannot move"
            )
    if members.handler is None:
        raise MigrationError(f"{cls.name} has no handle(self, request) method")
    if len(members.handler.args.args) != 1:
        raise MigrationError("handle must take exactly one argument besides self: the request")
    return members


def _module_names(tree: ast.Module, skip: set[str]) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names - skip


def _base_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom) and node.module == catalog.BASE_MODULE:
        for alias in node.names:
            if alias.asname is not None:
                raise MigrationError(f"line {node.lineno}: renamed import of {alias.name}")
        return True
    if isinstance(node, ast.Import) and any(a.name == catalog.BASE_MODULE for a in node.names):
        raise MigrationError(f"line {node.lineno}: import the base names with from-import")
    return False


def to_sdk(tree: ast.Module) -> tuple[ast.Module, Summary]:
    """The module rewritten to the SDK pattern, and what was done; `tree` is consumed."""
    cls = catalog.controller_class(tree)
    if cls is None:
        raise MigrationError("expected exactly one class deriving from Controller")
    route_node, tool_name = _route(tree)
    summary = Summary(tool_name=tool_name, description=catalog.description_of(cls))
    if not summary.description:
        raise MigrationError(f"{cls.name} has no docstring to describe the tool")
    members = _take_apart(cls)
    handler = members.handler
    assert handler is not None  # _take_apart guarantees it

    taken = _module_names(tree, {cls.name, "ROUTE", catalog.BASE_CLASS, *ERROR_RENAMES})
    new_names = [*members.renames.values(), tool_name]
    clashes = sorted({n for n in new_names if n in taken or new_names.count(n) > 1})
    if clashes:
        raise MigrationError(
            f"moving the class to module level would clash on: {', '.join(clashes)}"
        )

    functions = [*members.helpers, handler]
    for function in functions:
        rewriter = _SelfRewriter(members.receivers[function.name], cls.name, members, summary)
        function.body = [rewriter.visit(stmt) for stmt in function.body]
        function.args = rewriter.visit(function.args)
    for function in members.helpers:
        function.name = members.renames[function.name]
    handler.name = tool_name
    if ast.get_docstring(handler) is None:
        handler.body.insert(0, ast.Expr(ast.Constant(ast.get_docstring(cls))))
    handler.decorator_list = [
        ast.Call(
            ast.Name("tool", ast.Load()),
            [],
            [
                ast.keyword("name", ast.Constant(tool_name)),
                ast.keyword("description", ast.Constant(summary.description)),
            ],
        )
    ]
    summary.constants = [n for n, new in members.renames.items() if n not in members.receivers]
    summary.helpers = [f.name for f in members.helpers]

    body: list[ast.stmt] = []
    for node in tree.body:
        if node is route_node:
            continue
        if _base_import(node):
            body.append(ast.ImportFrom(SDK_MODULE, [], 0))  # names filled in below
        elif node is cls:
            body.extend([*members.constants, *functions])
        else:
            body.append(node)
    module = ast.Module(body, type_ignores=[])
    _rename_errors(module, summary)
    for node in module.body:
        if isinstance(node, ast.ImportFrom) and node.module == SDK_MODULE:
            node.names = [ast.alias(name) for name in sorted(summary.sdk_names)]
    if any(isinstance(n, ast.Name) and n.id == catalog.BASE_CLASS for n in ast.walk(module)):
        raise MigrationError(f"the module still refers to {catalog.BASE_CLASS} outside the class")
    return ast.fix_missing_locations(module), summary


def _rename_errors(module: ast.Module, summary: Summary) -> None:
    for node in ast.walk(module):
        if isinstance(node, ast.Name) and node.id in ERROR_RENAMES:
            node.id = ERROR_RENAMES[node.id]
            summary.sdk_names.add(node.id)


def render(module: ast.Module) -> str:
    """Source for `module`, with the blank lines a reader expects between top-level parts."""
    blocks = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    imports = (ast.Import, ast.ImportFrom)
    text, previous = "", None
    for node in module.body:
        if previous is not None:
            after_docstring = isinstance(previous, ast.Expr) and previous is module.body[0]
            if isinstance(node, blocks) or isinstance(previous, blocks):
                text += "\n\n"
            elif after_docstring or isinstance(previous, imports) != isinstance(node, imports):
                text += "\n"
        # unparsed alone, a module docstring would lose its triple quotes
        alone = ast.Module([node], type_ignores=[]) if previous is None else node
        text += ast.unparse(alone) + "\n"
        previous = node
    return text


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step, so a parallel reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def migrate(source: catalog.ToolSource, workdir: Path) -> tuple[Path, Summary]:
    """Migrate one tool into `workdir/sdk_tools/`; returns the written file and the summary."""
    original = source.path.read_text(encoding="utf-8")
    module, summary = to_sdk(ast.parse(original, filename=str(source.path)))
    relative = source.path.relative_to(catalog.HERE)
    text = (
        f"# Migrated to the SDK pattern from {relative} by migrate_tool.py; edit the original.\n"
        + render(module)
    )
    target = workdir / "sdk_tools" / f"{source.module}.py"
    compile(text, str(target), "exec")  # a broken rewrite fails here, not in the check
    write_atomically(workdir / "sdk_tools" / "__init__.py", PACKAGE_DOC)
    write_atomically(target, text)
    return target, summary


def main(argv: list[str]) -> int:
    chosen = catalog.cli_target(argv, USAGE, __doc__, "migrate_tool")
    if isinstance(chosen, int):
        return chosen
    source, workdir = chosen
    try:
        target, summary = migrate(source, workdir)
    except (MigrationError, SyntaxError) as exc:
        print(f"migrate_tool: cannot migrate {source.component}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"migrate_tool: cannot write the migrated {source.component}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{source.component}: {source.controller} -> @tool {summary.tool_name!r} in {target} "
        f"({len(summary.constants)} constant(s), {len(summary.helpers)} helper(s) moved)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
