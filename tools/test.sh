#!/usr/bin/env bash
# README command 2: install, build, run every test. Fails if no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
log=$(mktemp)
set +e
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 900) 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if ! grep -qE "tests passed, [0-9]+ tests failed out of [1-9][0-9]*" "$log"; then
  echo "test.sh: no tests ran" >&2
  exit 1
fi
exit "$rc"
