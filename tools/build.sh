#!/usr/bin/env bash
# Configures and builds fedsim in ./build: -O2 with asserts, the code of the
# default RelWithDebInfo build without its debug info, which costs compile and
# link time on a 2-core CI machine (add -DCMAKE_BUILD_TYPE=RelWithDebInfo for a
# debugger; extra arguments go to cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O2 "$@" >/dev/null
cmake --build build -j"$(nproc)"
