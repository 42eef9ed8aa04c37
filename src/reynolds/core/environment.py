"""What a step's `env` may add to its child's environment.

The child keeps a few of the server's variables (PATH, HOME, LANG, LC_*, TMPDIR, PYENV_*) and
adds the step's own. A step may not set what decides which code a program loads or what a shell
or an interpreter runs before the argv it was given: with any of these, "run this argv" becomes
"run this argv, and that script too". Names are compared case-insensitively, so `ld_preload`
is refused with `LD_PRELOAD`, though the loader only reads the latter.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

LOADER = "the dynamic loader or the C library reads it"
SHELL = "a shell reads it at start-up"
INTERPRETER = "an interpreter reads it at start-up"

# Exact names (upper case) and why each is refused. The loader's are glibc's "unsecvars",
# the variables it drops for setuid programs, TMPDIR aside (kept: it only says where
# temporary files go).
REFUSED_NAMES: dict[str, str] = {
    "PATH": "it is the server's, so that the executable a pool allows is the one that runs",
    **dict.fromkeys(
        [
            "GCONV_PATH",
            "GETCONF_DIR",
            "GLIBC_TUNABLES",
            "HOSTALIASES",
            "LOCALDOMAIN",
            "LOCPATH",
            "NIS_PATH",
            "NLSPATH",
            "RESOLV_HOST_CONF",
            "RES_OPTIONS",
            "TZDIR",
        ],
        LOADER,
    ),
    **dict.fromkeys(
        [
            "BASH_ENV",
            "ENV",
            "SHELLOPTS",
            "BASHOPTS",
            "PS4",
            "IFS",
            "CDPATH",
            "GLOBIGNORE",
            "ZDOTDIR",
        ],
        SHELL,
    ),
    **dict.fromkeys(
        [
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
        ],
        INTERPRETER,
    ),
}
# Prefixes (upper case): whole families.
REFUSED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("LD_", LOADER),
    ("MALLOC_", LOADER),
    ("BASH_FUNC_", "bash imports it as a function"),
    ("PYTHON", INTERPRETER),
    ("LUA_INIT", INTERPRETER),
)


def env_name_problem(name: str) -> str | None:
    """Why a step may not set `name`, or None when it may."""
    if not _NAME.fullmatch(name):
        return (
            f"{name!r} is not a valid environment variable name "
            "(letters, digits and _, not starting with a digit, at most 128)"
        )
    upper = name.upper()
    why = REFUSED_NAMES.get(upper) or next(
        (w for p, w in REFUSED_PREFIXES if upper.startswith(p)), None
    )
    return f"{name} may not be set by a step: {why}" if why else None
