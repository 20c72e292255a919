#!/usr/bin/env bash
# README command 1: install dependencies, build, and run the main job on the embedded default
# (synthetic dataset, tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/launcher/evl info
./build/launcher/evl config
