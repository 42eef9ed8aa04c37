"""The database password: read from secrets/db_password.txt, put in the URL, shown nowhere."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url
from tests.helpers.ports import closed_port
from typer.testing import CliRunner

from reynolds.adapters.store import backup as backups
from reynolds.entrypoints.cli import app
from reynolds.errors import BackupError
from reynolds.settings import Settings

PASSWORD = "s3cr@t:p/w%rd#?"  # every character a URL must quote
runner = CliRunner()


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secrets folder holding db_password.txt (with a trailing newline, as editors leave it)."""
    for name in ("REYNOLDS_DATABASE_URL", "REYNOLDS_API_TOKEN", "REYNOLDS_HOST", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "db_password.txt").write_text(f"{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("REYNOLDS_SECRETS_DIR", str(folder))
    monkeypatch.setenv("REYNOLDS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REYNOLDS_PORT", str(closed_port()))
    monkeypatch.setenv("REYNOLDS_PERSONALITY", "off")
    monkeypatch.chdir(tmp_path)
    return folder


def test_a_postgresql_url_without_a_password_takes_the_one_in_db_password_txt(
    secrets: Path,
) -> None:
    settings = Settings(database_url="postgresql+psycopg://reynolds@db:5432/reynolds")

    url = make_url(settings.effective_database_url)

    assert url.password == PASSWORD
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.host, url.port, url.database) == ("reynolds", "db", 5432, "reynolds")
    assert PASSWORD not in settings.effective_database_url  # quoted, not raw


def test_a_password_in_the_url_wins_over_the_file(secrets: Path) -> None:
    settings = Settings(database_url="postgresql+psycopg://reynolds:given@db/reynolds")

    assert make_url(settings.effective_database_url).password == "given"


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        (None, None),
        ("sqlite:///elsewhere.db", "sqlite:///elsewhere.db"),
    ],
)
def test_sqlite_urls_are_left_alone(
    secrets: Path, database_url: str | None, expected: str | None
) -> None:
    settings = Settings(database_url=database_url)

    assert settings.effective_database_url == (
        expected or f"sqlite:///{settings.home / 'reynolds.db'}"
    )


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["absent", "empty", "blank"])
def test_without_a_password_file_the_url_is_used_as_given(
    secrets: Path, content: str | None
) -> None:
    path = secrets / "db_password.txt"
    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8")
    given = "postgresql+psycopg://reynolds@db:5432/reynolds"

    assert Settings(database_url=given).effective_database_url == given


def test_production_start_against_an_unreachable_database_names_it_without_the_password(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "REYNOLDS_DATABASE_URL", f"postgresql+psycopg://reynolds@127.0.0.1:{closed_port()}/r"
    )

    result = runner.invoke(app, ["start", "--production"])

    assert result.exit_code == 1
    assert "is not reachable" in result.output
    assert "reynolds:***@127.0.0.1" in result.output
    assert_hidden(result.output)
    assert not (secrets.parent / "home" / "reynolds.pid").exists()


def test_a_failed_postgresql_backup_says_why_without_the_password(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "REYNOLDS_DATABASE_URL", f"postgresql+psycopg://reynolds@127.0.0.1:{closed_port()}/r"
    )

    result = runner.invoke(app, ["backup", str(secrets.parent / "x.dump")])

    assert result.exit_code == 1
    assert "pg_dump" in result.output  # failed to connect, or is not installed
    assert_hidden(result.output)
    assert list(secrets.parent.glob("*x.dump*")) == []


def test_pg_dump_gets_the_password_in_a_file_never_on_its_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        passfile = Path(options["env"]["PGPASSFILE"]).read_text(encoding="utf-8")
        calls.append({"argv": argv, "passfile": passfile, **options})
        # As libpq would put it, plus the password, to show it is hidden from messages too.
        stderr = f'pg_dump: error: password authentication failed for "reynolds" ({PASSWORD})\n'
        return subprocess.CompletedProcess(argv, 1, "", stderr)

    monkeypatch.setattr(backups.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(backups.subprocess, "run", fake_run)
    url = make_url("postgresql+psycopg://reynolds@db:5432/reynolds?sslmode=require")
    with_password = url.set(password=PASSWORD).render_as_string(hide_password=False)

    with pytest.raises(BackupError) as failed:
        backups.backup(with_password, tmp_path / "x.dump")

    (call,) = calls
    assert call["argv"][0] == "/usr/bin/pg_dump"
    assert "--format=custom" in call["argv"]
    assert "--dbname=postgresql://reynolds@db:5432/reynolds?sslmode=require" in call["argv"]
    assert_hidden(" ".join(call["argv"]))
    escaped = PASSWORD.replace(":", "\\:")  # libpq's password file escapes `:`
    assert call["passfile"] == f"*:*:*:*:{escaped}\n"
    assert PASSWORD not in str(call["env"])
    assert call.get("shell") is not True
    assert_hidden(str(failed.value))
    assert "***" in str(failed.value)


def test_the_libpq_uri_drops_the_driver_and_the_password_and_keeps_the_rest() -> None:
    target = backups.libpq_target(
        "postgresql+psycopg://me:pw@h1:6543/db?options=-csearch_path%3Dx&sslmode=require"
    )

    assert target.dsn == "postgresql://me@h1:6543/db?options=-csearch_path%3Dx&sslmode=require"
    assert target.password == "pw"
    with target.password_file() as passfile:
        assert passfile is not None and passfile.read_text(encoding="utf-8") == "*:*:*:*:pw\n"
    assert backups.libpq_target("postgresql+psycopg://me@h1/db").password is None


def assert_hidden(text: str) -> None:
    """Neither the password nor its URL-quoted form appears in `text`."""
    for form in (PASSWORD, quote(PASSWORD, safe="")):
        assert form not in text


def test_pg_dump_reads_the_password_from_a_private_file_and_gets_no_other_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc shows a program's environment to every process of its user while it runs: the
    # password goes in a file only its owner can read, removed afterwards, and the caller's
    # other secrets stay behind.
    monkeypatch.setenv("REYNOLDS_API_TOKEN", "api-token-4f2a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-9c1d")
    monkeypatch.setenv("PGPASSWORD", "stale-password")
    monkeypatch.setenv("PGSSLMODE", "require")
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        env = options["env"]
        passfile = Path(env["PGPASSFILE"])
        seen.update(env=env, passfile=passfile, mode=passfile.stat().st_mode & 0o777)
        seen["content"] = passfile.read_text(encoding="utf-8")
        return subprocess.CompletedProcess(argv, 1, "", "pg_dump: error: nope\n")

    monkeypatch.setattr(backups.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(backups.subprocess, "run", fake_run)
    password = "p:w\\d"
    url = make_url("postgresql+psycopg://reynolds@db:5432/reynolds")
    with pytest.raises(BackupError):
        backups.backup(url.set(password=password).render_as_string(False), tmp_path / "x.dump")

    env = seen["env"]
    assert "PGPASSWORD" not in env
    assert "REYNOLDS_API_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["PGSSLMODE"] == "require" and env["PATH"]
    assert seen["mode"] == 0o600
    # libpq's format: `:` and `\` in a field are escaped with a backslash.
    assert seen["content"] == "*:*:*:*:p\\:w\\\\d\n"
    assert not seen["passfile"].exists()
