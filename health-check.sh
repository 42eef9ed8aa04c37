#!/usr/bin/env bash
# Health of the running server: ./health-check.sh [--verbose] [--export --format json|text]
# Exits 0 healthy, 2 warnings, 1 failures.
set -euo pipefail
# An exported report lands where the caller is, not in the repository folder.
caller=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/_bootstrap.sh
source scripts/_bootstrap.sh
reynolds_bootstrap
exec .venv/bin/reynolds health --output-dir "$caller" "$@"
