# shellcheck shell=bash
# Sourced by the scripts at the repository root: makes sure .venv exists and holds the current
# project, installing it again whenever pyproject.toml is newer than the last install.
# Messages go to standard error so that the commands' own output stays clean for pipes.

REYNOLDS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REYNOLDS_VENV="$REYNOLDS_ROOT/.venv"
REYNOLDS_STAMP="$REYNOLDS_VENV/.reynolds-installed"

reynolds_python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

reynolds_bootstrap() {
  if [[ ! -x "$REYNOLDS_VENV/bin/python" ]] || ! reynolds_python_ok "$REYNOLDS_VENV/bin/python"; then
    local python=${PYTHON:-python3}
    if ! command -v "$python" >/dev/null 2>&1; then
      echo "error: $python was not found; Reynolds needs Python 3.11 or newer" >&2
      return 1
    fi
    if ! reynolds_python_ok "$python"; then
      echo "error: Reynolds needs Python 3.11 or newer; $python is $("$python" -V 2>&1)" >&2
      return 1
    fi
    echo "Creating $REYNOLDS_VENV with $("$python" -V 2>&1)" >&2
    rm -rf "$REYNOLDS_VENV"
    "$python" -m venv "$REYNOLDS_VENV"
  fi
  if [[ ! -f "$REYNOLDS_STAMP" || "$REYNOLDS_ROOT/pyproject.toml" -nt "$REYNOLDS_STAMP" \
        || ! -x "$REYNOLDS_VENV/bin/reynolds" ]]; then
    echo "Installing Reynolds and its development tools into $REYNOLDS_VENV" >&2
    (cd "$REYNOLDS_ROOT" && "$REYNOLDS_VENV/bin/python" -m pip install --quiet \
      --disable-pip-version-check -e '.[dev]') >&2
    touch "$REYNOLDS_STAMP"
  fi
}
