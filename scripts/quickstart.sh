#!/usr/bin/env bash
# README command 1: install dependencies, build, and run the main job on the embedded default
# (synthetic dataset, tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/launcher/evl info
# The main job on the embedded default (configs/quickstart.pbtxt): 2 ranks, synthetic motion data.
# A demo starts fresh: an earlier demo's checkpoints would otherwise be auto-resumed.
rm -rf runs/quickstart
./build/launcher/evl launch -n 2 -- train
