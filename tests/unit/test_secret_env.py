"""Handing secrets from one Reynolds program to the next without an environment variable."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from reynolds.entrypoints import secret_env
from reynolds.entrypoints.cli import app
from reynolds.settings import SECRET_SETTINGS, Settings

SHOW = (
    "import os; from reynolds.entrypoints import secret_env; from reynolds.settings import"
    " Settings; s = Settings(**secret_env.settings_arguments(secret_env.received()));"
    " print(s.token(), s.database_url, os.environ.get('REYNOLDS_API_TOKEN'),"
    " os.environ.get('REYNOLDS_SECRETS_FD'))"
)


def test_secret_variables_are_split_out_whatever_their_case() -> None:
    clean, secrets = secret_env.split(
        {
            "REYNOLDS_API_TOKEN": "t",
            "reynolds_database_url": "postgresql://u:p@h/d",
            "REYNOLDS_REDIS_URL": "redis://:p@h/0",
            "REYNOLDS_PORT": "8080",
            "PATH": "/bin",
            secret_env.SECRETS_FD: "7",
        }
    )

    assert clean == {"REYNOLDS_PORT": "8080", "PATH": "/bin"}
    assert set(secrets) == {"REYNOLDS_API_TOKEN", "reynolds_database_url", "REYNOLDS_REDIS_URL"}
    assert secret_env.settings_arguments(secrets) == {
        "api_token": "t",
        "database_url": "postgresql://u:p@h/d",
        "redis_url": "redis://:p@h/0",
    }


def test_every_secret_str_setting_is_kept_out_of_environments() -> None:
    secret = {
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *typing.get_args(field.annotation))
    }
    assert secret
    assert secret <= set(SECRET_SETTINGS)


def test_handed_over_secrets_reach_the_next_programs_settings_and_not_its_environment(
    tmp_path: Path,
) -> None:
    environ = {
        **os.environ,
        "REYNOLDS_API_TOKEN": "handed-token",
        "REYNOLDS_DATABASE_URL": "sqlite:///handed.db",
    }
    env, fd = secret_env.launch_environment(environ)
    assert fd is not None
    try:
        shown = subprocess.run(
            [sys.executable, "-c", SHOW],
            env=env,
            pass_fds=(fd,),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        os.close(fd)
    assert "REYNOLDS_API_TOKEN" not in env
    assert shown.stdout.split() == ["handed-token", "sqlite:///handed.db", "None", "None"]


def test_without_secrets_nothing_is_handed_over() -> None:
    env, fd = secret_env.launch_environment({"PATH": "/bin", "REYNOLDS_PORT": "1"})

    assert fd is None
    assert env == {"PATH": "/bin", "REYNOLDS_PORT": "1"}


@pytest.mark.parametrize("kind", ["not a number", "closed", "a file"])
def test_a_descriptor_that_is_no_pipe_of_secrets_is_a_one_line_configuration_error(
    kind: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (home.parent / "not-a-pipe").open("w") as file:
        value = {"not a number": "three", "closed": "987", "a file": str(file.fileno())}[kind]
        monkeypatch.setattr(secret_env, "_received", None)
        monkeypatch.setenv(secret_env.SECRETS_FD, value)

        result = CliRunner().invoke(app, ["status"])

    assert result.exit_code == 2
    assert f"REYNOLDS_SECRETS_FD={value!r} is not a pipe" in result.output
    assert "Traceback" not in result.output
