#!/usr/bin/env bash
# Installs the Debian 12 packages evl needs. A no-op (no apt calls) when they are all present.
#   scripts/install-deps.sh          what building and running evl needs (a cluster login node)
#   scripts/install-deps.sh --test   that and what the test suite needs: GoogleTest, the ffmpeg
#                                    CLI and PyAV/torch/Pillow for the reference fixtures, clang for
#                                    the fuzzers, Slurm's daemons for the Slurm tests, and
#                                    iproute2 for the simulated multi-node cluster
#   add --list to print the packages instead of installing them
set -euo pipefail

RUNTIME=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev nlohmann-json3-dev libcli11-dev libzip-dev
  libgoogle-perftools-dev
)
TEST=(
  libgtest-dev libgmock-dev
  ffmpeg  # the CLI makes the real-footage test corpus (tests/corpus/make_corpus.sh)
  python3-torch python3-numpy python3-av python3-pil
  clang libclang-rt-14-dev
  slurmctld slurmd slurm-client munge
  iproute2 procps  # the simulated multi-node cluster (tests/cluster/netns-cluster.sh)
  opencv-doc  # real camera footage (its examples) for bench/realistic_footage.sh
)

PACKAGES=("${RUNTIME[@]}")
list=0
for arg in "$@"; do
  case "$arg" in
    --test) PACKAGES+=("${TEST[@]}") ;;
    --list) list=1 ;;
    *) echo "install-deps: unknown argument '$arg' (use --test, --list)" >&2; exit 2 ;;
  esac
done
if [ $list -eq 1 ]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

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
