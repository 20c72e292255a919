#!/usr/bin/env bash
# Installs every Debian 12 package evl needs to build, test and run its demo.
# A no-op (no apt calls) when they are all present already.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  ffmpeg  # the CLI makes the real-footage test corpus (tests/corpus/make_corpus.sh)
  libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libcli11-dev libzip-dev
  python3-torch python3-numpy python3-av python3-pil
  clang libclang-rt-14-dev
  libgoogle-perftools-dev
  slurmctld slurmd slurm-client munge
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
