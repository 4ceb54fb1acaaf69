#!/usr/bin/env bash
# quickstart-test.sh — README command 2: install what is missing, build (release preset,
# build/release), run the whole ctest suite (unit + integration), exit non-zero on any
# failure. Run as root from the clone (integration tests need root; without it they skip).
#
# Environment: NWFQ_JOBS (default 2) build and test parallelism; NWFQ_CTEST_ARGS extra
# arguments for ctest (e.g. "-L integration" or "-LE integration").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${NWFQ_JOBS:-2}

log() { printf '\n[quickstart-test] %s\n' "$*" >&2; }

case ${1:-} in
  -h|--help) sed -n '2,8{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
esac

if [ "$(id -u)" = 0 ]; then
  "$ROOT/tools/install-deps.sh"
else
  log "not root: skipping package installation; integration tests will skip"
fi

log "configure (release preset -> build/release)"
cmake --preset release >/dev/null
log "build (-j$JOBS)"
cmake --build --preset release -j "$JOBS"

# A lab left behind by an interrupted run would hold the queue; start clean.
if [ "$(id -u)" = 0 ] && [ -x build/release/tools/nwfqctl/nwfqctl ]; then
  build/release/tools/nwfqctl/nwfqctl lab down || true
fi

log "ctest (unit + integration)"
# shellcheck disable=SC2086  # NWFQ_CTEST_ARGS is a list of words on purpose
ctest --test-dir build/release --output-on-failure -j "$JOBS" ${NWFQ_CTEST_ARGS:-}
