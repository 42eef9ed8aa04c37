"""Fixtures of the CLI unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.ports import closed_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A REYNOLDS_HOME of its own with the default SQLite store, and a port where nothing
    listens."""
    for name in ("REYNOLDS_API_TOKEN", "REYNOLDS_HOST", "REYNOLDS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REYNOLDS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REYNOLDS_PORT", str(closed_port()))
    monkeypatch.setenv("REYNOLDS_PERSONALITY", "off")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"
