"""`reynolds orchestrate FILE` with a number JSON or YAML has but Python cannot read (thousands of
digits): a one-line error naming the file and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reynolds.entrypoints.cli import app

LONG = "1" * 5000


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("task.json", f'{{"type": "x", "components": [{LONG}]}}'),
        ("task.yaml", f"type: x\ncomponents: [{LONG}]\n"),
    ],
)
def test_a_number_too_long_to_read_is_a_task_file_error(
    home: Path, tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["orchestrate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{path}: not valid" in " ".join(result.output.split())
    assert "Traceback" not in result.output
