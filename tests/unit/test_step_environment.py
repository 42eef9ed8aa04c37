"""What a step's `env` may set: nothing that changes how a program is loaded or how a shell or
an interpreter starts, whatever its case; and only well-formed variable names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reynolds.core import environment
from reynolds.core.models import ShellAction

LOADER = [
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "ld_preload",
    "Ld_Library_Path",
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "MALLOC_ARENA_MAX",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TZDIR",
]
SHELL = [
    "PATH",
    "path",
    "BASH_ENV",
    "ENV",
    "env",
    "BASH_FUNC_greet",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "ZDOTDIR",
]
INTERPRETERS = [
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "pythonhome",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "LUA_INIT",
    "LUA_INIT_5_4",
]
NOT_NAMES = ["A=B", "1ABC", "A B", "", "A-B", "Ä", "X" * 129]
ALLOWED = [
    "GREETING",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYENV_VERSION",
    "MY_PATH",
    "PATH_INFO",
    "ENVIRONMENT",
    "LDFLAGS",
    "NODE_ENV",
    "JAVA_HOME",
    "_private",
]


def env_refusal(name: str) -> str:
    with pytest.raises(ValidationError) as raised:
        ShellAction.model_validate({"kind": "shell", "argv": ["env"], "env": {name: "x"}})
    (error,) = raised.value.errors()
    assert error["loc"] == ("env",)
    return str(error["msg"])


@pytest.mark.parametrize("name", LOADER + SHELL + INTERPRETERS)
def test_a_loader_or_start_up_variable_is_refused_whatever_its_case(name: str) -> None:
    reason = env_refusal(name)
    assert reason.startswith(f"{name} may not be set by a step: "), reason


@pytest.mark.parametrize("name", NOT_NAMES)
def test_a_name_that_is_no_variable_name_is_refused(name: str) -> None:
    assert "is not a valid environment variable name" in env_refusal(name)


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_variables_may_be_set(name: str) -> None:
    action = ShellAction.model_validate({"kind": "shell", "argv": ["env"], "env": {name: "x"}})
    assert action.env == {name: "x"}


def test_the_readme_lists_every_refused_name_and_family() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [n for n in environment.REFUSED_NAMES if f"`{n}`" not in readme]
    missing += [f"{p}*" for p, _ in environment.REFUSED_PREFIXES if f"`{p}*`" not in readme]
    assert missing == []
