"""The `reynolds` command line (Typer + Rich)."""

from reynolds.entrypoints.cli.app import app, main

__all__ = ["app", "main"]
