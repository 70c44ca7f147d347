#!/usr/bin/env bash
# The lean sanitizer build: AddressSanitizer + UndefinedBehaviorSanitizer, -O1,
# no debug info, no LibTorch, no benchmarks, in build-asan/; then the unit
# tests under it. Any sanitizer report fails the run: UBSan halts on its first
# finding (-fno-sanitize-recover), ASan always does, LeakSanitizer reports at
# exit. Integration tests that only re-run whole scenarios many times (the
# golden runs, sweeps, tunes, the install check) are left to the GCC build:
# they exercise the same code as the unit tests at many times the cost.
# `tools/sanitize.sh --build-only` only builds.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 \
  -DFEDSIM_SANITIZE=ON -DFEDSIM_TORCH=OFF -DFEDSIM_BENCH=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
if [ "${1:-}" = --build-only ]; then exit 0; fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log=$(mktemp)
set +e
(cd build-asan && ctest --output-on-failure -j"$(nproc)" --timeout 900 \
  -E '^(Scenarios/Golden\.|Sweep\.|Tune\.|install_smoke$)') 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if ! grep -qE "tests passed, [0-9]+ tests failed out of [1-9][0-9]*" "$log"; then
  echo "sanitize.sh: no tests ran" >&2
  exit 1
fi
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$log"; then
  echo "sanitize.sh: a sanitizer reported (see above)" >&2
  exit 1
fi
exit "$rc"
