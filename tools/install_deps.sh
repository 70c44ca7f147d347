#!/usr/bin/env bash
# Installs everything fedsim needs from Debian's archive (run as root).
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libboost1.81-dev libprotobuf-dev protobuf-compiler libzstd-dev zlib1g-dev
  libarmadillo-dev libopenblas0-pthread libyaml-cpp-dev libgtest-dev libbenchmark-dev
  libcli11-dev python3-matplotlib chromium
  libtorch-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev qemu-user
  dataset-fashion-mnist
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
