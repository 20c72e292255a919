#!/bin/bash
# The whole GPU check in one command, for a session lent a GPU machine (it has CUDA, PyTorch with
# its LibTorch and pip's NCCL, CMake and ninja, and no FFmpeg, MPI, protobuf or glog):
#   1. installs .gpu-bundle/ (scripts/gpu-bundle.sh, run beforehand on a Debian 12 machine);
#   2. builds the whole evl against the machine's LibTorch and NCCL;
#   3. `evl train` at world 1 on the quick-start data: FP16 backbone, FP16 autocast + loss scaling,
#      the mpi+nccl communicator; a simulated crash at step 300, a resume from the step-200
#      checkpoint, held-out top-1 at the end; the CPU run's first-step loss beside the GPU's;
#   4. `evl eval` and `evl predict` on CUDA;
#   5. the ViT-B/16 8-frame training step (batch 32) beside the official model.py recipe on the
#      same GPU, the backbone against its FLOP floor, and the GPU memory peak per clip.
#
#   bench/gpu_check.sh [--skip-bench]    (writes gpu_check.txt, build.log, nvidia-smi.txt under $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/evl-gpu-check}
mkdir -p "$out"
exec > >(tee -a "$out/gpu_check.txt") 2>&1
t0=$SECONDS
step() { echo; echo "== [$((SECONDS - t0)) s] $*"; }
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
head -15 "$out/nvidia-smi.txt"

step "install the bundle"
eval "$(scripts/gpu-unbundle.sh .gpu-bundle)" || { echo "bundle install failed"; exit 1; }
python=$(command -v python3)
prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
nccl=$("$python" -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])')
echo "LibTorch $prefix; NCCL $nccl"

step "configure and build"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DEVL_BUILD_TESTS=OFF \
  -DNCCL_INCLUDE_DIR="$nccl/include" -DNCCL_LIBRARY="$(ls "$nccl"/lib/libnccl.so* | head -1)" \
  -DCUDAToolkit_ROOT=/usr/local/cuda -DProtobuf_INCLUDE_DIR=/opt/evl-protobuf/include > "$out/build.log" 2>&1 || { tail -60 "$out/build.log"; exit 1; }
grep -E "NCCL|Torch|MPI" "$out/build.log" | head
cmake --build build-gpu -j "$(nproc)" -- -k 0 >> "$out/build.log" 2>&1 ||
  { echo "BUILD FAILED (continuing with what built):"; grep -B2 -A12 "error" "$out/build.log" | head -150; }
export LD_LIBRARY_PATH=$nccl/lib:$LD_LIBRARY_PATH
export GLOG_logtostderr=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
evl=build-gpu/launcher/evl
if [ -x $evl ]; then
  $evl info
  run=/tmp/evl-gpu-run
  rm -rf $run /tmp/evl-cpu-run
  common=(--config configs/quickstart.pbtxt --set model.backbone.precision=FP16 --set train.device=CUDA
          --set train.run_dir=$run --set train.save_freq=200 --set data.num_workers=6)
  step "train on CUDA until a simulated crash before step 300"
  EVL_TEST_EXIT_AT_STEP=300 $evl train "${common[@]}"
  echo "exit status $? (7: the simulated crash)"
  step "resume"
  $evl train "${common[@]}"
  echo "exit status $?"
  step "the same first step on the CPU (FP32), same data"
  $evl train --config configs/quickstart.pbtxt --set train.device=CPU --set train.num_steps=1 \
    --set train.run_dir=/tmp/evl-cpu-run --set data.train_list=$run/cache/synthetic-data/train.txt --set data.data_root=$run/cache/synthetic-data
  "$python" - $run/metrics.jsonl /tmp/evl-cpu-run/metrics.jsonl <<'PY'
import json, sys
first = lambda p: next(j for j in map(json.loads, open(p)) if j.get('step') == 1)
g, c = first(sys.argv[1])['loss'], first(sys.argv[2])['loss']
print(f"first-step loss: CUDA FP16 {g:.6f}, CPU FP32 {c:.6f}, relative difference {abs(g - c) / abs(c):.2e}")
PY
  grep eval_step $run/metrics.jsonl | tail -1
  step "evl eval on CUDA"
  $evl eval "${common[@]}" --out /tmp/evl-gpu-eval
  step "evl predict on CUDA"
  video=$(head -1 $run/cache/synthetic-data/val.txt | awk '{print $1}')
  $evl predict "${common[@]}" --checkpoint $run/checkpoints/best.evlckpt --input "$run/cache/synthetic-data/$video"
  echo "(true class: $(head -1 $run/cache/synthetic-data/val.txt | awk '{print $2}'))"
fi
[ "${1:-}" = "--skip-bench" ] && { step "done (model bench skipped)"; exit 0; }
step "ViT-B/16 8-frame step, batch 32, beside the official model.py"
bench=build-gpu/bench/evl_model_bench
[ -x $bench ] && $bench --device cuda --preset B16 --frames 8 --batch 32 --iters 10 --threads 8 \
  --python "$python" --official-repo .gpu-bundle/official
step "done"
