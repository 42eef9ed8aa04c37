"""The task file of `reynolds orchestrate`: JSON or YAML, a task or `{task, strategy}`."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import yaml


class TaskFileError(Exception):
    """The task file cannot be read or does not hold a task."""


class Approach(StrEnum):
    """The strategies `orchestrate_task` accepts (contract section 4)."""

    PARALLEL_OPTIMIZED = "parallel_optimized"
    PARALLEL_URGENT = "parallel_urgent"
    HYBRID_INTELLIGENT = "hybrid_intelligent"
    DIRECT = "direct"


_WRAPPER_KEYS = frozenset({"task", "strategy"})
_YAML_SUFFIXES = frozenset({".yaml", ".yml"})


def read_task_file(path: str, stdin: TextIO) -> dict[str, Any]:
    """The `{task, strategy?}` arguments held by FILE (`-` reads standard input as YAML or JSON)."""
    if path == "-":
        return parse_task_document(stdin.read(), "yaml", source="standard input")
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".json":
        kind = "json"
    elif suffix in _YAML_SUFFIXES:
        kind = "yaml"
    else:
        raise TaskFileError(f"{path}: the file name must end in .json, .yaml or .yml (or be -)")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskFileError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{path}: not UTF-8 text") from exc
    return parse_task_document(text, kind, source=path)


def parse_task_document(text: str, kind: str, *, source: str = "task") -> dict[str, Any]:
    """Parse JSON (`kind="json"`) or YAML text into `{task, strategy?}` arguments."""
    try:
        document = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        # ValueError besides json's own: a number too long for Python to read, in either.
        raise TaskFileError(f"{source}: not valid {kind.upper()}: {_describe(exc)}") from exc
    return task_arguments(_jsonable(document), source=source)


def task_arguments(document: Any, *, source: str = "task") -> dict[str, Any]:
    """A task object (it has `type`) or a `{task, strategy?}` wrapper, as tool arguments."""
    if not isinstance(document, dict):
        raise TaskFileError(f"{source}: expected a mapping, got {_kind_of(document)}")
    if isinstance(document.get("task"), dict):
        extra = sorted(set(document) - _WRAPPER_KEYS)
        if extra:
            raise TaskFileError(
                f"{source}: unexpected key(s) beside task and strategy: {', '.join(extra)}"
            )
        strategy = document.get("strategy")
        if strategy is not None and not isinstance(strategy, dict):
            raise TaskFileError(f"{source}: strategy must be a mapping, got {_kind_of(strategy)}")
        arguments: dict[str, Any] = {"task": document["task"]}
        if strategy is not None:
            arguments["strategy"] = strategy
        return arguments
    if "type" in document:
        return {"task": document}
    raise TaskFileError(f"{source}: expected a task (with a 'type') or {{task, strategy}}")


def with_overrides(
    arguments: dict[str, Any],
    *,
    approach: str | None = None,
    max_concurrency: int | None = None,
) -> dict[str, Any]:
    """A copy of the arguments whose strategy carries the command-line flags."""
    if approach is None and max_concurrency is None:
        return dict(arguments)
    strategy = dict(arguments.get("strategy") or {})
    if approach is not None:
        strategy["approach"] = str(approach)
    if max_concurrency is not None:
        # The file may spell it in snake_case; one spelling must win, and the flag does.
        strategy.pop("max_concurrency", None)
        strategy["maxConcurrency"] = max_concurrency
    return {**arguments, "strategy": strategy}


def _jsonable(value: Any) -> Any:
    """YAML's dates and times become ISO-8601 strings, as the wire expects."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _describe(exc: ValueError | yaml.YAMLError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split())
