#!/usr/bin/env bash
# Agent pools: ./scale-agents.sh status|scale TYPE N|auto [--dry-run]|watch SECONDS|thresholds
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/_bootstrap.sh
source scripts/_bootstrap.sh
reynolds_bootstrap
if [[ $# -eq 0 ]]; then
  set -- status
fi
exec .venv/bin/reynolds agents "$@"
