#!/usr/bin/env bash
# Installs the Debian packages hearth needs to build and test (or, with --bench, to benchmark).
# Idempotent and quiet: when everything is present it prints nothing and touches nothing.
set -euo pipefail

BUILD_PKGS=(
  gcc make cmake pkg-config
  libuv1-dev node-llhttp libjansson-dev libsqlite3-dev
)
TEST_PKGS=(
  libcmocka-dev python3 clang libclang-rt-14-dev curl
)
BENCH_PKGS=(
  wrk nginx-light procps
)

want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}")
if [[ "${1:-}" == "--bench" ]]; then
  want+=("${BENCH_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
