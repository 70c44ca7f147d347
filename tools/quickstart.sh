#!/usr/bin/env bash
# README command 1: install, build, run the quick-start scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
build/fedsim run scenarios/quickstart.yaml --out out/quickstart
