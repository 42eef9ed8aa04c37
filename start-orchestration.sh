#!/usr/bin/env bash
# Start, stop and inspect Reynolds; `test` runs every check CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/_bootstrap.sh
source scripts/_bootstrap.sh

usage() {
  cat <<'TXT'
Usage: ./start-orchestration.sh COMMAND [ARGS]

  start [--production]   start the server in the background and wait until it is healthy;
                         --production: PostgreSQL and Redis from the configuration, PostgreSQL
                         checked and migrated first
  stop [--production]    stop the server (a production one too: it is the same process)
  restart [--production] stop, then start
  status                 pools and task counts of the running server
  logs [COMPONENT] [-f]  the end of a log (reynolds = the server)
  cleanup                stop the server, prune its git worktrees in every repository tasks
                         worked on and in REYNOLDS_WORKSPACE_REPOS, and remove its state
                         (.reynolds/)
  test [PYTEST ARGS]     lint, format check, type check, then the test suite
TXT
}

step() {
  echo "==> $*" >&2
  "$@"
}

cleanup() {
  .venv/bin/reynolds stop
  .venv/bin/reynolds worktrees prune
  local home=.reynolds
  if [[ -n "${REYNOLDS_HOME:-}" && "$(realpath -m "$REYNOLDS_HOME")" != "$PWD/.reynolds" ]]; then
    echo "REYNOLDS_HOME is $REYNOLDS_HOME: leaving it in place (remove it yourself if you mean to)"
    return 0
  fi
  if [[ -d "$home" ]]; then
    echo "Removing $PWD/$home (database, logs, pid file)"
    rm -rf -- "$home"
  else
    echo "Nothing to remove: $PWD/$home does not exist"
  fi
}

command=${1:-}
if [[ $# -gt 0 ]]; then shift; fi
case "$command" in
  start | stop | status | logs)
    reynolds_bootstrap
    exec .venv/bin/reynolds "$command" "$@"
    ;;
  restart)
    reynolds_bootstrap
    .venv/bin/reynolds stop
    exec .venv/bin/reynolds start "$@"
    ;;
  cleanup)
    reynolds_bootstrap
    cleanup
    ;;
  test)
    reynolds_bootstrap
    step .venv/bin/ruff check src tests benchmarks examples
    step .venv/bin/ruff format --check src tests benchmarks examples
    step .venv/bin/mypy
    step .venv/bin/python -m pytest "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
