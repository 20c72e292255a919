#!/bin/bash
# The GPU check, prepared for a session that is lent a GPU machine (it has PyTorch with CUDA, and no
# FFmpeg, MPI, protobuf or glog): builds the model library and its step benchmark on their own
# against that machine's LibTorch, then measures the ViT-B/16 8-frame training step in the official
# GPU recipe (FP16 backbone, FP16 autocast, scaled loss) beside the Python code on the same GPU.
#
#   bench/gpu_check.sh [--out DIR] [--official-repo DIR] [--batch 32] [--iters 10]
#
# Without --official-repo the Python side is evl's reference model (tests/fixtures/evl_reference.py).
# Writes nvidia-smi.txt, build.log and model_bench.txt under --out (default $OUT, else /tmp/evl-gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/evl-gpu-check}
official=""
batch=32
iters=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --official-repo) official=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
python=$(command -v python3)
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
{
  cmake -S model -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build build-gpu -j "$(nproc)" --target evl_model_bench
} > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
args=(--device cuda --preset B16 --frames 8 --batch "$batch" --iters "$iters" --python "$python")
[[ -n $official ]] && args+=(--official-repo "$official")
build-gpu/evl_model_bench "${args[@]}" 2>&1 | tee "$out/model_bench.txt"
