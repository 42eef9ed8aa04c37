#!/usr/bin/env bash
# Stop Reynolds: ./stop-orchestration.sh [--production]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/_bootstrap.sh
source scripts/_bootstrap.sh
reynolds_bootstrap
exec .venv/bin/reynolds stop "$@"
