#!/usr/bin/env bash
# Stop Reynolds: ./stop-orchestration.sh [--production]
# SIGTERM, then SIGKILL of its process group after 20 s. A server started with --production is
# the same process, so --production stops it the same way (the flag is accepted for symmetry).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/_bootstrap.sh
source scripts/_bootstrap.sh
reynolds_bootstrap
exec .venv/bin/reynolds stop "$@"
