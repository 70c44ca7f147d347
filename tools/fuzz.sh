#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan) in build-fuzz/ and runs each
# for N seconds; `tools/fuzz.sh --build-only` only builds them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
# -gline-tables-only: file and line in ASan's reports, without the cost of full debug info.
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only" -DFEDSIM_FUZZ=ON \
  -DFEDSIM_TESTS=OFF -DFEDSIM_BENCH=OFF >/dev/null
targets=$(ls tests/fuzz/*.cc 2>/dev/null | xargs -n1 basename | sed 's/\.cc$//')
if [ -z "$targets" ]; then echo "fuzz.sh: no fuzz targets" >&2; exit 1; fi
cmake --build build-fuzz -j"$(nproc)" --target $targets
if [ "$seconds" = --build-only ]; then exit 0; fi
for t in $targets; do
  echo "fuzz: $t for ${seconds}s"
  mkdir -p build-fuzz/corpus/$t
  # The shipped traces seed the trace parsers' corpus.
  if [ "$t" = fuzz_traces ]; then cp scenarios/traces/*.csv build-fuzz/corpus/$t/; fi
  build-fuzz/$t -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=0 build-fuzz/corpus/$t 2>&1 | tail -n 3
done
echo "fuzz: all targets ran without a crash"
