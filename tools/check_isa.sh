#!/usr/bin/env bash
# Checks that no build runs an instruction the CPU may lack. Every build must
# run on any x86-64-v2 CPU; the SIMD kernels choose their AVX2 / AVX-512
# variants at run time (core/base/simd.h). Three parts:
#
#  1. objdump of fedsim, simd_test and the fuzz targets: AVX-512 instructions
#     (zmm or mask registers, EVEX-only registers or syntax) only in functions
#     named *_avx512, 256-bit and other VEX instructions only in *_avx2 and
#     *_avx512 ones. Static, so it catches a stray wide instruction on any
#     host, AVX-512 ones included.
#  2. The SIMD tests (simd_test, qsgd_test, compressors_test,
#     decoder_robustness_test, rng_test of BUILD_DIR; compressors_test and
#     decoder_robustness_test filtered to the vectorised stages) under
#     `qemu-x86_64 -cpu Haswell` (AVX2, no AVX-512: qemu 7.2 has no AVX-512
#     at all, so any such instruction is SIGILL) and `-cpu Nehalem`
#     (x86-64-v2, no AVX: qemu traps VEX there), i.e. on the AVX2 and the
#     baseline paths; simd_test also natively with FEDSIM_SIMD=avx2 and
#     baseline. simd_test pins the quantizers' bytes, so every path must give
#     the same ones (the AVX-512 path runs natively in tools/test.sh on an
#     AVX-512 host).
#  3. The libFuzzer targets, clang-built as by tools/fuzz.sh, under
#     `-cpu Haswell`: one fixed input per stage pipeline (dimension 299, two
#     layers, encode then decode: every kernel runs) and then random inputs.
#     qemu-user 7.2 cannot run ASan binaries (it tracks every page of ASan's
#     16 TB shadow reservation and runs out of memory), so the targets are
#     compiled a second time without ASan (-DFEDSIM_FUZZ_ASAN=OFF), otherwise
#     with tools/fuzz.sh's compiler and flags, in build-fuzz/noasan; the ASan
#     binaries get part 1.
#
# Usage: tools/check_isa.sh [BUILD_DIR]   (default build/, as tools/test.sh
# leaves it; the test targets are built there if missing or stale).
# FEDSIM_ISA_FUZZ=0 skips part 3 and the builds it needs.
#        tools/check_isa.sh --scan BINARY...   part 1 only, on those binaries.
set -euo pipefail
fuzz=build-fuzz
noasan=build-fuzz/noasan
tests=(simd_test qsgd_test compressors_test decoder_robustness_test rng_test packed_kernels_test)
# Under qemu (10-50x slower) only the tests of the vectorised stages.
declare -A qemu_filter=(
  [packed_kernels_test]='PackedKernels.*Path*:PackedKernels.Dispatched*:PackedKernels.StochasticCodes*'
  [compressors_test]='NaturalCompression.*:NaturalDithering.*:*Qsgd*:ZstdCoder.*:ThresholdQuantizer.*:LogQuantizer.*'
  [decoder_robustness_test]='*qsgd*:*natural*'
)
haswell=Haswell-noTSX,-pcid,-x2apic,-tsc-deadline,-invpcid  # minus what TCG lacks (it warns)
nehalem=Nehalem
jobs=$(nproc)
fail=0
started=$SECONDS
step() { echo "check_isa: $* ($((SECONDS - started)) s)"; }
bad() { echo "check_isa: FAIL: $*" >&2; fail=1; }
finish() {
  if ((fail)); then echo "check_isa: FAILED ($((SECONDS - started)) s)" >&2; exit 1; fi
  echo "check_isa: no instruction beyond x86-64-v2 outside the dispatched variants ($((SECONDS - started)) s)"
  exit 0
}

# 1. Wide instructions outside the variants named for them. Mangled names:
# a variant's name contains _avx512 or _avx2 (templates and GCC's .isra /
# .constprop copies included).
scan() {
  objdump -d --no-show-raw-insn "$1" | awk -v bin="$1" '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
    /^ *[0-9a-f]+:\t/ {
      insn = $0; sub(/^ *[0-9a-f]+:\t/, "", insn)
      # AVX-512 registers and syntax, and AVX-512F mnemonics that may show
      # neither (scalar or mask instructions).
      avx512 = insn ~ /%zmm|%k[0-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])|\{%k|\{1to|\{z\}|\{[a-z-]*sae\}/ ||
               insn ~ /^(k[a-z]+|vpternlog[dq]|vperm[it]2[a-z]+|valign[dq]|vpmov(q[bwd]|d[bw]|wb|u?s[qdw][bwd])) / ||
               insn ~ /^(vcvt[a-z0-9]*2u[a-z]+|vcvtu[a-z0-9]+|vexpand[a-z]+|vcompress[a-z]+|vrndscale[a-z]+) / ||
               insn ~ /^(vgetexp[a-z]+|vgetmant[a-z]+|vscalef[a-z]+|vrcp14[a-z]+|vrsqrt14[a-z]+|vfixupimm[a-z]+) / ||
               insn ~ /^(vpro[lr]v?[dq]|vpsravq|vpsraq|vpabsq|vp(max|min)[su]q|vpmullq) / ||
               insn ~ /^(v(extract|insert)[if](32x4|32x8|64x2|64x4)|vshuf[if](32x4|64x2)) /
      vex = insn ~ /^v[a-z0-9]+ / || insn ~ /%ymm/
      if (avx512 && fn !~ /_avx512/) { if (!(fn in wide)) wide[fn] = insn; ++count[fn] }
      else if (vex && fn !~ /_avx512|_avx2/) { if (!(fn in avx)) avx[fn] = insn; ++count[fn] }
    }
    END {
      for (f in wide) print bin ": AVX-512 in " f " (" count[f] " instructions, e.g. " wide[f] ")"
      for (f in avx) if (!(f in wide)) print bin ": AVX in " f " (" count[f] " instructions, e.g. " avx[f] ")"
    }' | c++filt
}
scan_all() {
  local b found
  for b in "$@"; do
    [ -f "$b" ] || { bad "$b: missing"; continue; }
    found=$(scan "$b")
    if [ -n "$found" ]; then bad "$found"; else echo "  $b: clean"; fi
  done
}

for tool in qemu-x86_64 objdump; do
  command -v "$tool" >/dev/null || { echo "check_isa: $tool not found (tools/install_deps.sh)" >&2; exit 1; }
done

if [ "${1:-}" = --scan ]; then
  shift
  scan_all "$@"
  finish
fi
cd "$(dirname "$0")/.."
build=${1:-build}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build_log=$tmp/build.log
quiet() {
  "$@" >>"$build_log" 2>&1 || { tail -n 40 "$build_log" >&2; echo "check_isa: build failed: $*" >&2; exit 1; }
}
step "building the SIMD tests in $build"
[ -f "$build/CMakeCache.txt" ] || quiet cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFEDSIM_BENCH=OFF
quiet cmake --build "$build" -j"$jobs" --target fedsim "${tests[@]}"
fuzz_targets=$(ls tests/fuzz/*.cc | xargs -n1 basename | sed 's/\.cc$//')
if [ "${FEDSIM_ISA_FUZZ:-1}" != 0 ]; then
  step "building the fuzz targets in $fuzz (ASan) and $noasan (no ASan)"
  quiet tools/fuzz.sh --build-only
  quiet env CXX=clang++ cmake -S . -B "$noasan" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DFEDSIM_FUZZ=ON \
    -DFEDSIM_FUZZ_ASAN=OFF -DFEDSIM_TESTS=OFF -DFEDSIM_BENCH=OFF
  quiet cmake --build "$noasan" -j"$jobs" --target $fuzz_targets
fi

step "objdump: wide instructions only in _avx2 / _avx512 functions"
binaries=("$build/fedsim" "$build/simd_test")
if [ "${FEDSIM_ISA_FUZZ:-1}" != 0 ]; then
  for t in $fuzz_targets; do binaries+=("$fuzz/$t" "$noasan/$t"); done
fi
scan_all "${binaries[@]}"

# 2. The SIMD tests on every path.
run_test() {  # label, expected "cpu_isa=... best_isa=...", command...
  local label=$1 expect=$2 log=$tmp/test.log
  shift 2
  if "$@" >"$log" 2>&1; then
    if [ -n "$expect" ] && ! grep -q "$expect" "$log"; then
      bad "$label: expected $expect, got: $(grep -o 'cpu_isa=[a-z0-9]* best_isa=[a-z0-9]*' "$log")"
    else
      echo "  $label: $(grep -E '^\[  PASSED  \]' "$log")"
    fi
  else
    bad "$label:"; grep -E "FAILED|Failure|signal|Illegal|ERROR" "$log" | head -n 20 >&2
  fi
}
step "SIMD tests natively with FEDSIM_SIMD capping the path"
for cap in avx2 baseline; do
  run_test "simd_test FEDSIM_SIMD=$cap" "best_isa=$cap" env FEDSIM_SIMD=$cap "$build/simd_test"
  run_test "packed_kernels_test FEDSIM_SIMD=$cap" "" env FEDSIM_SIMD=$cap "$build/packed_kernels_test"
done
for cpu in "$haswell" "$nehalem"; do
  name=${cpu%%[-,]*}
  isa=avx2; [ "$name" = Nehalem ] && isa=baseline
  step "SIMD tests under qemu-x86_64 -cpu $name"
  run_test "simd_test on $name" "cpu_isa=$isa best_isa=$isa" qemu-x86_64 -cpu "$cpu" "$build/simd_test"
  for t in "${tests[@]:1}"; do
    run_test "$t on $name" "" qemu-x86_64 -cpu "$cpu" "$build/$t" --gtest_filter="${qemu_filter[$t]:-*}"
  done
done

# 3. The fuzz targets under -cpu Haswell.
if [ "${FEDSIM_ISA_FUZZ:-1}" != 0 ]; then
  inputs=$tmp/inputs
  mkdir -p "$inputs/fuzz_decoders" "$inputs/fuzz_scenario"
  # fuzz_decoders input: pipeline, dimension (2 bytes LE: 298 -> 299),
  # mode 3 (two layers, decode a genuine payload first), a short payload.
  for ((p = 0; p < 256; ++p)); do
    printf "\\x$(printf %02x $p)\\x2a\\x01\\x03\\x5e\\xed\\x00\\x11\\x80\\xff" >"$inputs/fuzz_decoders/p$p"
  done
  for f in $(find scenarios -name '*.yaml'); do cp "$f" "$inputs/fuzz_scenario/$(echo "$f" | tr / _)"; done
  for t in $fuzz_targets; do
    step "$t under qemu-x86_64 -cpu Haswell"
    seeds="$inputs/$t"
    [ -d "$seeds" ] || { mkdir -p "$seeds"; printf 'x' >"$seeds/x"; }
    log=$tmp/fuzz.log
    # -handle_ill=0: qemu then reports an illegal instruction as such.
    # fuzz_checkpoint builds and runs a small simulation per input (its
    # vectorised kernels run in every one): a few inputs are enough here.
    runs=3000; [ "$t" = fuzz_checkpoint ] && runs=30
    if qemu-x86_64 -cpu "$haswell" "$noasan/$t" -seed=1 -runs=$runs -rss_limit_mb=4096 -handle_ill=0 \
      -artifact_prefix="$inputs/" "$seeds" >"$log" 2>&1; then
      echo "  $t: $(grep -E '^Done [0-9]+ runs' "$log")"
    else
      bad "$t under Haswell:"; tail -n 20 "$log" >&2
    fi
  done
fi

finish
