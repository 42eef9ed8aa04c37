"""`reynolds backup` and `reynolds restore` on the default SQLite store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.helpers.stores import put_tasks, task_ids
from typer.testing import CliRunner

from reynolds.adapters.store.lock import HomeLock
from reynolds.adapters.store.migrate import head_revision
from reynolds.entrypoints.cli import app

runner = CliRunner()


def store_url(home: Path) -> str:
    return f"sqlite:///{home / 'reynolds.db'}"


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_backup_writes_a_timestamped_file_under_the_home_and_prints_its_path_and_size(
    home: Path,
) -> None:
    put_tasks(store_url(home), "t1", "t2")

    result = runner.invoke(app, ["backup"])

    assert result.exit_code == 0, result.output
    (made,) = (home / "backups").iterdir()
    assert re.fullmatch(r"reynolds-\d{8}-\d{6}\.db", made.name)
    assert str(made) in result.output
    assert f"{made.stat().st_size:,} bytes" in result.output
    assert "2 task(s)" in result.output


def test_a_restore_brings_back_the_tasks_of_the_backup(home: Path, tmp_path: Path) -> None:
    url = store_url(home)
    put_tasks(url, "before-1", "before-2")
    saved = tmp_path / "saved.db"
    assert runner.invoke(app, ["backup", str(saved)]).exit_code == 0
    (home / "reynolds.db").unlink()
    put_tasks(url, "after")

    result = runner.invoke(app, ["restore", str(saved), "--yes"])

    assert result.exit_code == 0, result.output
    assert f"schema revision {head_revision()}" in result.output
    assert task_ids(url) == {"before-1", "before-2"}


def test_a_restore_asks_first_and_changes_nothing_unless_told_yes(
    home: Path, tmp_path: Path
) -> None:
    url = store_url(home)
    put_tasks(url, "saved")
    saved = tmp_path / "saved.db"
    assert runner.invoke(app, ["backup", str(saved)]).exit_code == 0
    put_tasks(url, "later")

    declined = runner.invoke(app, ["restore", str(saved)], input="n\n")

    assert declined.exit_code == 1
    assert "Replace every task in sqlite:///" in declined.output
    assert "the store is unchanged" in declined.output
    assert task_ids(url) == {"saved", "later"}

    no_answer = runner.invoke(app, ["restore", str(saved)], input="")

    assert no_answer.exit_code == 1
    assert task_ids(url) == {"saved", "later"}

    accepted = runner.invoke(app, ["restore", str(saved)], input="y\n")

    assert accepted.exit_code == 0, accepted.output
    assert task_ids(url) == {"saved"}


def test_a_restore_is_refused_while_a_server_holds_the_home(home: Path, tmp_path: Path) -> None:
    url = store_url(home)
    put_tasks(url, "saved")
    saved = tmp_path / "saved.db"
    assert runner.invoke(app, ["backup", str(saved)]).exit_code == 0
    put_tasks(url, "live")

    with HomeLock(home / "scheduler.lock"):
        result = runner.invoke(app, ["restore", str(saved), "--yes"])

    assert result.exit_code == 1
    line = one_line_error(result.output)
    assert "is running on" in line
    assert "stop it first (reynolds stop)" in line
    assert task_ids(url) == {"saved", "live"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a database at all\n" * 50, "is not a SQLite database"),
        (b"SQLite format 3\x00" + b"\x00" * 84 + b"\xff" * 4000, "saved.db"),
    ],
    ids=["garbage", "damaged"],
)
def test_a_corrupt_backup_is_refused_in_one_line_and_the_store_kept(
    home: Path, tmp_path: Path, content: bytes, reason: str
) -> None:
    url = store_url(home)
    put_tasks(url, "kept")
    bad = tmp_path / "saved.db"
    bad.write_bytes(content)

    result = runner.invoke(app, ["restore", str(bad), "--yes"])

    assert result.exit_code == 1
    assert reason in one_line_error(result.output)
    assert task_ids(url) == {"kept"}


def test_a_missing_backup_file_is_named(home: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["restore", str(tmp_path / "nope.db"), "--yes"])

    assert result.exit_code == 1
    assert "no backup file at" in one_line_error(result.output)


def test_backup_of_a_home_with_no_store_yet_says_there_is_nothing_to_back_up(
    home: Path,
) -> None:
    result = runner.invoke(app, ["backup"])

    assert result.exit_code == 1
    assert "nothing to back up" in one_line_error(result.output)
    assert not (home / "reynolds.db").exists()
