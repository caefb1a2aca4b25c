#!/usr/bin/env bash
# Installs the Debian packages btm needs (build, tests, analysis). Idempotent and quiet
# when everything is present. As root it installs; otherwise it prints the exact command.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev
  libtrilinos-kokkos-dev libtomlplusplus-dev libgtest-dev
  libopenblas-dev liblapack-dev libsentencepiece-dev zlib1g-dev libdnnl-dev
  clang-14 libclang-rt-14-dev
  python3 python3-torch python3-h5py python3-numpy python3-matplotlib python3-sklearn
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $EUID -ne 0 ]]; then
  echo "btm setup: missing Debian packages: ${missing[*]}" >&2
  echo "install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "btm setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "btm setup: done"
