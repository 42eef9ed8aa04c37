"""What every command shares: the Settings (built once, on first use) and the consoles."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from reynolds.entrypoints import secret_env
from reynolds.entrypoints.cli.client import (
    DEFAULT_TIMEOUT_S,
    ApiError,
    ClientError,
    ReynoldsClient,
)
from reynolds.errors import InvalidInput
from reynolds.settings import Settings

# Rich wraps to 80 columns when not on a terminal; ids and tables should survive a pipe.
_PIPE_WIDTH = 200


def _console(stderr: bool) -> Console:
    # Errors are never wrapped: one line each, however long, for logs and scripts.
    console = Console(stderr=stderr, highlight=False, soft_wrap=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=_PIPE_WIDTH, soft_wrap=stderr)
    return console


@dataclass
class CliState:
    """Built by the root command; reached through `typer.Context.obj`."""

    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                # Secrets handed over by the process that started this one (see secret_env).
                handed = secret_env.settings_arguments(secret_env.received())
                self._settings = Settings(**handed)
            except InvalidInput as exc:
                self.err.print(f"[red]configuration:[/] {escape(exc.message)}")
                raise typer.Exit(2) from None
            except ValidationError as exc:
                for problem in exc.errors():
                    field_name = ".".join(str(p) for p in problem["loc"])
                    # Seed-named variables (CPU_THRESHOLD_SCALE_UP, …) are reported as spelt.
                    variable = (
                        field_name if field_name.isupper() else f"REYNOLDS_{field_name.upper()}"
                    )
                    self.err.print(f"[red]configuration:[/] {variable}: {problem['msg']}")
                raise typer.Exit(2) from None
        return self._settings

    @property
    def personality(self) -> bool:
        return self.settings.personality == "on"

    @contextmanager
    def connect(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[ReynoldsClient]:
        """A client whose errors end the command as one line and an exit code, no traceback."""
        settings = self.settings
        client = ReynoldsClient(settings.base_url, settings.token(), timeout_s=timeout_s)
        try:
            yield client
        except ClientError as exc:
            self.report(exc)
            raise typer.Exit(exc.exit_code) from None
        finally:
            client.close()

    def comment(self, text: Any) -> None:
        """The server's Reynolds-voice line, dim, unless the personality is off."""
        if text and self.personality:
            self.out.print(f"[dim]{escape(str(text))}[/]")

    def report(self, error: ClientError) -> None:
        self.err.print(f"[red]error:[/] {escape(str(error))}")
        if isinstance(error, ApiError):
            for problem in error.fields:
                self.err.print(f"  {escape(problem.field)}: {escape(problem.reason)}")


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = ctx.find_root().obj = CliState()
    return obj


def print_json(value: Any) -> None:
    """JSON alone on standard output, for scripts (no Rich markup or wrapping)."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
