#!/usr/bin/env bash
# Installs the Debian packages Switchboard needs to build, run and test — only those missing.
# Build: cmake (libopus, llama.cpp), clang/libclang-dev (bindgen), pkg-config, libespeak-ng-dev.
# Run:   espeak-ng-data (voices).  Test: espeak-ng, sox (fixture generation and checks).
# Fetching model weights needs python3 with pip (present on the supported machines).
set -euo pipefail

PKGS=(build-essential cmake clang libclang-dev pkg-config libespeak-ng-dev espeak-ng-data espeak-ng sox python3)

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
