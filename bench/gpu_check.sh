#!/usr/bin/env bash
# The GPU check, one command on a lent GPU machine (CUDA, PyTorch with its LibTorch, pip's NCCL,
# CMake, ninja; no FFmpeg, MPI, protobuf, glog or GoogleTest: those come from .gpu-bundle/, made
# beforehand on a Debian 12 machine by scripts/gpu-bundle.sh). A check, not a report:
#   1. refuses (exit 2, one line) a tree with uncommitted or untracked files (unless --allow-dirty),
#      a machine without nvidia-smi or a visible GPU, a missing .gpu-bundle/, a python whose torch
#      has no CUDA; then records the commit, date, GPU, torch and NCCL at the top of the record;
#   2. installs the bundle, configures build-gpu/ and builds only what it runs: evl,
#      evl_model_bench, and tests/precision_test when GoogleTest is there (a failed build fails);
#   3. correctness checks, each one line, PASS or FAIL: FP16 against FP32 block by block and end to
#      end (precision_test --device cuda); `evl train` on CUDA (FP16) through a simulated crash and a
#      resume; its first-step loss against a CPU FP32 run on the same data; held-out top-1; `evl
#      eval`; `evl predict`; a hung rank and a SIGKILLed rank each ending a 2-rank job within the
#      stall bound; world-2 NCCL (two ranks sharing the GPU) against world-2 MPI when the NCCL can;
#      ending in `N passed, N failed`;
#   4. benchmarks (not checks; a failure is reported): the ViT-B/16 8-frame training step beside
#      the official model.py, the backbone against its FLOP floor, decoder, AdamW, memory per clip;
#      ViT-L/14 16 frames likewise.
# Every step runs under `timeout`, cut to what is left of an 8-minute budget (budget_s below).
# Exit status: 0 every check passed; 1 a check failed, or none ran; 2 refused.
#
#   bench/gpu_check.sh [--commit SHA] [--allow-dirty] [--skip-bench]
# --commit SHA: for a copy of the tree without its .git (as the device tool may send it); the caller
# has checked there that the tree is committed and clean.
# Writes under $OUT (default /tmp/evl-gpu-check): gpu_check_<gpu>_<date>.txt, the record (what
# docs/ keeps), and logs.tar.gz, every step's log (logs/NAME.log) and nvidia-smi's, packed at exit
# (the device tool returns 8 files at most).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD

refuse() {
  echo "gpu_check: refused: $*" >&2
  exit 2
}

# ---- The checks. Each runs in a bash of its own under `timeout` (exported below), in the
# repository root, with its output in logs/NAME.log; a line starting `RESULT: ` is copied into the
# record under the check's PASS/FAIL line. They read the exported $evl, $python, $runs.

# The quick-start config on CUDA: FP16 backbone, FP16 autocast + loss scaling, mpi+nccl at world 1.
cuda_args() {
  common=(--config configs/quickstart.pbtxt --set model.backbone.precision=FP16 --set train.device=CUDA
          --set "train.run_dir=$runs/gpu" --set train.save_freq=200 --set data.num_workers=6)
}
# A small CPU job, as tests/train_test.cpp's SmallRun: the quick-start data, 24 videos, 2 threads.
cpu_small_args() {
  small=(--config configs/quickstart.pbtxt --set train.device=CPU --set train.threads=2 --set train.batch_size=8
         --set train.eval_freq=0 --set train.print_freq=4 --set data.synthetic.videos=24 --set data.num_workers=1
         --set "train.run_dir=$1")
}

precision_fp16() {
  local bin=build-gpu/tests/precision_test rc
  [ -x "$bin" ] || { echo "RESULT: $bin was not built (see build_tests)"; return 1; }
  "$bin" --device cuda > "$runs/precision.out" 2>&1
  rc=$?
  cat "$runs/precision.out"
  if grep -q '  SKIPPED ' "$runs/precision.out"; then
    echo "RESULT: a test was skipped: $(grep '  SKIPPED ' "$runs/precision.out" | head -1)"
    return 1
  fi
  echo "RESULT: $(grep -c '^\[       OK \]' "$runs/precision.out") test(s) OK, $(grep -c '^\[  FAILED  \] .* ([0-9]* ms)$' "$runs/precision.out") failed (FP16 backbone on CUDA against FP32: every block, the logits, the decoder under autocast)"
  [ "$rc" -eq 0 ] && grep -q '^\[  PASSED  \]' "$runs/precision.out"
}

# EVL_TEST_EXIT_AT_STEP (worker/base/src/fault_injection.cpp): _Exit(7) before step 300.
train_cuda_crash() {
  local rc
  rm -rf "$runs/gpu"
  cuda_args
  EVL_TEST_EXIT_AT_STEP=300 "$evl" train "${common[@]}"
  rc=$?
  echo "RESULT: exit status $rc (7: the simulated crash before step 300); step-200 checkpoint $(
    [ -f "$runs/gpu/checkpoints/ckpt-00000200.evlckpt" ] && echo written || echo MISSING)"
  [ "$rc" -eq 7 ] && [ -f "$runs/gpu/checkpoints/ckpt-00000200.evlckpt" ]
}

# The same command again: it resumes from the step-200 checkpoint and must reach num_steps, with
# metrics.jsonl holding steps 1..600 once each (the crashed run's steps after 200 dropped).
train_cuda_resume() {
  local rc
  cuda_args
  "$evl" train "${common[@]}" > "$runs/resume.out" 2>&1
  rc=$?
  cat "$runs/resume.out"
  grep -q 'resumed from .*ckpt-00000200' "$runs/resume.out" || { echo "RESULT: exit $rc, but it did not resume from the step-200 checkpoint"; return 1; }
  "$python" - "$runs/gpu/metrics.jsonl" "$rc" <<'PY'
import json, sys
steps = [j['step'] for j in map(json.loads, open(sys.argv[1])) if 'step' in j]
ok = sys.argv[2] == '0' and steps == list(range(1, 601))
print(f"RESULT: exit status {sys.argv[2]}, resumed from step 200; metrics.jsonl: {len(steps)} step lines, "
      f"last {steps[-1] if steps else None} of 600{'' if steps == list(range(1, 601)) else ', NOT steps 1..600 once each'}")
sys.exit(0 if ok else 1)
PY
}

# The first step's loss in FP32 on the CPU, same data and seed, against the CUDA FP16 run's. Bound
# 2e-2 relative: FP16 keeps 11 significant bits (unit roundoff 4.9e-4); through the FP16 backbone and
# the decoder under autocast a correct path lands within ~1e-3 (1.3e-5 measured on an H200,
# 2026-11-27); 2e-2 leaves room for other GPUs' and cuBLAS versions' reduction orders and still
# fails a broken one: a chance-level output (loss ln 4 = 1.386) is 3.4% from the measured 1.340.
# The tight per-block bounds are precision_test's.
first_step_fp16_vs_fp32() {
  local data=$runs/gpu/cache/synthetic-data
  rm -rf "$runs/cpu"
  "$evl" train --config configs/quickstart.pbtxt --set train.device=CPU --set train.num_steps=1 \
    --set "train.run_dir=$runs/cpu" --set "data.train_list=$data/train.txt" --set "data.data_root=$data" ||
    { echo "RESULT: the CPU run failed"; return 1; }
  "$python" - "$runs/gpu/metrics.jsonl" "$runs/cpu/metrics.jsonl" <<'PY'
import json, sys
first = lambda p: next(j for j in map(json.loads, open(p)) if j.get('step') == 1)['loss']
g, c = first(sys.argv[1]), first(sys.argv[2])
d, bound = abs(g - c) / abs(c), 2e-2
print(f"RESULT: first-step loss: CUDA FP16 {g:.6f}, CPU FP32 {c:.6f}, relative difference {d:.2e} (bound {bound:g})")
sys.exit(0 if d < bound else 1)
PY
}

heldout_top1() {
  "$python" - "$runs/gpu/metrics.jsonl" <<'PY'
import json, sys
evals = [j for j in map(json.loads, open(sys.argv[1])) if 'eval_step' in j]
if not evals:
    print("RESULT: no evaluation in metrics.jsonl"); sys.exit(1)
e = evals[-1]
print(f"RESULT: held-out top-1 {e['top1']:.2f}% over {e['videos']} videos after step {e['eval_step']} (bound >= 90%)")
sys.exit(0 if e['top1'] >= 90 and e['eval_step'] == 600 else 1)
PY
}

eval_cuda() {
  cuda_args
  rm -rf "$runs/eval"
  "$evl" eval "${common[@]}" --out "$runs/eval" || { echo "RESULT: evl eval failed"; return 1; }
  "$python" - "$runs/eval/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"RESULT: exit status 0; top1 {m['top1']:.2f}% over {m['evaluated']} of {m['videos']} videos, {m['videos_per_s']:.1f} videos/s")
PY
}

# One held-out video of each class; the top class must be the true one for at least 3 of the 4
# (the run's held-out top-1 is ~97%: one fixed video may be its miss).
predict_cuda() {
  local data=$runs/gpu/cache/synthetic-data inputs=() labels=() path label
  while read -r path label; do
    inputs+=(--input "$data/$path")
    labels+=("$label")
  done < <(sort -u -k2,2 "$data/val.txt")
  cuda_args
  "$evl" predict "${common[@]}" --checkpoint "$runs/gpu/checkpoints/best.evlckpt" --json "${inputs[@]}" \
    > "$runs/predict.jsonl" || { echo "RESULT: evl predict failed"; return 1; }
  cat "$runs/predict.jsonl"
  "$python" - "$runs/predict.jsonl" "${labels[@]}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
labels = [int(x) for x in sys.argv[2:]]
got = [r['top'][0]['class'] if r.get('top') else None for r in rows]
right = sum(g == t for g, t in zip(got, labels))
print(f"RESULT: predicted {got} for true classes {labels}: {right} of {len(labels)} right (bound >= {len(labels) - 1})")
sys.exit(0 if len(rows) == len(labels) >= 2 and right >= len(labels) - 1 else 1)
PY
}

# EVL_TEST_STALL_AT_STEP/EVL_TEST_STALL_RANK: rank 1 sleeps an hour at step 3; rank 0 must name it
# and the job end non-zero within dist.stall_timeout_s plus start-up and abort (30 s).
stalled_rank() {
  local d=$runs/stalled stall=5 t0=$SECONDS rc el
  rm -rf "$d"
  cpu_small_args "$d"
  EVL_TEST_STALL_AT_STEP=3 EVL_TEST_STALL_RANK=1 "$evl" launch -n 2 --abort-timeout 10 -- train "${small[@]}" \
    --set train.num_steps=100000 --set "dist.stall_timeout_s=$stall" > "$d.out" 2>&1
  rc=$?
  el=$((SECONDS - t0))
  cat "$d.out"
  grep -q 'ranks not arrived: 1' "$d.out" || { echo "RESULT: status $rc after $el s, but rank 0 did not name rank 1"; return 1; }
  echo "RESULT: rank 1 hung at step 3; the job ended with status $rc after $el s, naming rank 1 (bound: non-zero within dist.stall_timeout_s $stall + 30 s)"
  [ "$rc" -ne 0 ] && [ "$el" -le $((stall + 30)) ]
}

# No fault hook SIGKILLs a rank, so rank 1 is started through a shell that writes its pid and
# execs evl; once rank 0 has logged step 8 the check sends that pid SIGKILL. mpirun must end the job
# non-zero within dist.stall_timeout_s + 10 s of the kill.
killed_rank() {
  local d=$runs/killed stall=10 job rc el t_kill pid i
  rm -rf "$d" "$d.out" "$d.pid"
  cpu_small_args "$d"
  local args=(train "${small[@]}" --set train.num_steps=100000 --set "dist.stall_timeout_s=$stall")
  # shellcheck disable=SC2016  # $$, $0 and $@ are the wrapper shell's own
  EVL_TEST_STEP_DELAY_MS=100 mpirun --oversubscribe --bind-to none -np 1 "$evl" "${args[@]}" : \
    -np 1 bash -c 'echo $$ > "$0"; exec "$@"' "$d.pid" "$evl" "${args[@]}" > "$d.out" 2>&1 &
  job=$!
  for ((i = 0; i < 600; i++)); do
    grep -q 'step 8/' "$d.out" && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q 'step 8/' "$d.out" || [ ! -s "$d.pid" ]; then
    kill "$job" 2>/dev/null
    wait "$job"
    cat "$d.out"
    echo "RESULT: the job never reached step 8 (or rank 1 wrote no pid)"
    return 1
  fi
  pid=$(cat "$d.pid")
  kill -KILL "$pid"
  t_kill=$SECONDS
  wait "$job"
  rc=$?
  el=$((SECONDS - t_kill))
  cat "$d.out"
  echo "RESULT: rank 1 (pid $pid) SIGKILLed after step 8; mpirun ended the job with status $rc $el s later (bound: non-zero within dist.stall_timeout_s $stall + 10 s)"
  [ "$rc" -ne 0 ] && [ "$el" -le $((stall + 10)) ]
}

# Two ranks on the one GPU over NCCL against two CPU ranks over MPI: same data, seed and steps, both
# in FP32 (so that only the communicator and the device differ); every step's loss within 1e-2
# relative. Only with NCCL >= 2.30.3 (NCCL_MULTI_RANK_GPU_ENABLE); the caller decides.
world2_nccl_vs_mpi() {
  local d=$runs/w2 n=20 rc
  rm -rf "$d"
  local base=(--config configs/quickstart.pbtxt --set model.backbone.precision=FP32 --set train.precision=FP32
              --set "train.num_steps=$n" --set train.eval_freq=0 --set train.threads=4 --set data.num_workers=2)
  "$evl" launch -n 2 -- train "${base[@]}" --set train.device=CPU --set "train.run_dir=$d/mpi" ||
    { echo "RESULT: the world-2 MPI run (CPU) failed"; return 1; }
  local data=$d/mpi/cache/synthetic-data
  # EVL_ALLOW_SHARED_GPU=1 is evl's opt-in for ranks sharing a GPU (launcher/src/device_choice.cpp):
  # with NCCL >= 2.30.3 each rank then sets NCCL_MULTI_RANK_GPU_ENABLE=1 itself. NVLS off and one
  # CTA are what NCCL's users pair with it.
  EVL_ALLOW_SHARED_GPU=1 NCCL_NVLS_ENABLE=0 NCCL_MAX_CTAS=1 "$evl" launch -n 2 -- train "${base[@]}" \
    --set train.device=CUDA --set dist.backend=COMM_NCCL --set "data.train_list=$data/train.txt" \
    --set "data.data_root=$data" --set "train.run_dir=$d/nccl" > "$d/nccl.out" 2>&1
  rc=$?
  cat "$d/nccl.out"
  [ "$rc" -eq 0 ] || { echo "RESULT: the world-2 NCCL run (CUDA) failed with status $rc"; return 1; }
  grep -Eq 'comm [a-z+]*nccl' "$d/nccl.out" || { echo "RESULT: the CUDA run did not train over NCCL"; return 1; }
  "$python" - "$d/nccl/metrics.jsonl" "$d/mpi/metrics.jsonl" "$n" <<'PY'
import json, sys
loss = lambda p: {j['step']: j['loss'] for j in map(json.loads, open(p)) if 'step' in j}
g, c, n = loss(sys.argv[1]), loss(sys.argv[2]), int(sys.argv[3])
steps = range(1, n + 1)
if any(s not in g or s not in c for s in steps):
    print(f"RESULT: missing steps: NCCL logged {len(g)}, MPI {len(c)} of {n}"); sys.exit(1)
d = max(abs(g[s] - c[s]) / abs(c[s]) for s in steps)
print(f"RESULT: {n} steps at world 2: NCCL (CUDA FP32) vs MPI (CPU FP32) loss, largest relative difference {d:.2e} (bound 1e-2); step {n}: {g[n]:.6f} vs {c[n]:.6f}")
sys.exit(0 if d < 1e-2 else 1)
PY
}

# The figures the record keeps, from evl_model_bench's output (bench/model_bench.cpp): its FP16 line
# and the lines under it. Status 1 when one is missing. Goals are the ViT-B/16 8-frame ones.
bench_figures() {
  "$python" - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], errors='replace').read()
head = re.search(r'^EVL (\S+), (\d+) frames, batch (\d+) clips', text, re.M)
if not head:
    print("      no 'EVL <preset>, N frames, batch N clips' line: no figures"); sys.exit(1)
label = {'B16': 'ViT-B/16', 'L14': 'ViT-L/14'}.get(head[1], head[1]) + f" {head[2]}f batch {head[3]}"
goals = head[1] == 'B16' and head[2] == '8'
fp16 = re.search(r'^evl fp16.*$\n(?:^    .*$\n?)*', text, re.M)
block = fp16[0] if fp16 else ''
def find(pattern):
    m = re.search(pattern, block)
    return float(m[1]) if m else None
def goal(text, ok):
    return f" (goal {text}: {'met' if ok else 'MISSED'})" if goals else ''
step, floor = find(r'train step ([\d.]+)x'), find(r'([\d.]+)x of the FLOP floor')
dec, adamw, mem = find(r'decoder fwd ([\d.]+) s'), find(r'AdamW ([\d.]+) s'), find(r'([\d.]+) MiB per clip')
against = 'the official model.py' if 'python (official model.py' in text else "evl's Python reference"
missing = []
if step is not None:
    print(f"      {label}: train step {step:.2f}x {against}" + goal('>= 2.5x', step >= 2.5))
else:
    missing.append('train step ratio')
if floor is not None:
    print(f"      {label}: backbone forward {floor:.2f}x of the FLOP floor" + goal('<= 1.7x', floor <= 1.7))
else:
    missing.append('FLOP floor')
if dec is not None and adamw is not None:
    print(f"      {label}: decoder forward {dec * 1e3:.1f} ms" + goal('<= 10 ms', dec <= 0.010)
          + f", AdamW {adamw * 1e3:.2f} ms" + goal('<= 1 ms', adamw <= 0.001))
else:
    missing.append('step breakdown')
if mem is not None:
    print(f"      {label}: GPU memory {mem:.1f} MiB per clip (a training step's peak over the batch)")
else:
    missing.append('memory per clip')
if missing:
    print(f"      {label}: not in the output: {', '.join(missing)}")
sys.exit(1 if missing else 0)
PY
}

# ---- The run.
main() {
  local allow_dirty=0 skip_bench=0 given_commit='' a
  while [ $# -gt 0 ]; do
    a=$1
    shift
    case $a in
      --allow-dirty) allow_dirty=1 ;;
      --skip-bench) skip_bench=1 ;;
      --commit) given_commit=${1:-}; shift || true ;;
      --commit=*) given_commit=${a#--commit=} ;;
      -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
      *) refuse "unknown argument '$a' (usage: bench/gpu_check.sh [--commit SHA] [--allow-dirty] [--skip-bench])" ;;
    esac
  done

  # Refusals, before anything is installed, built or written.
  local git=(git -c "safe.directory=$root")
  local commit dirty=''
  if [ -n "$given_commit" ]; then
    # The device tool copies the working tree, not always its .git: the caller, who checked on its
    # own machine that the tree was clean and committed, names the commit.
    [[ $given_commit =~ ^[0-9a-f]{7,40}$ ]] || refuse "--commit '$given_commit' is not a commit id"
    commit="$given_commit (given by the caller: the tree was checked clean where it was committed)"
  else
    commit=$("${git[@]}" rev-parse HEAD 2>&1) ||
      refuse "cannot read the commit (git rev-parse HEAD: ${commit//$'\n'/ }): in a copy without .git, name it: --commit SHA"
    dirty=$("${git[@]}" status --porcelain 2>&1) || refuse "git status failed: $dirty"
  fi
  if [ -n "$dirty" ]; then
    [ "$allow_dirty" = 1 ] ||
      refuse "the tree has $(wc -l <<< "$dirty") uncommitted or untracked path(s) (first: '$(head -1 <<< "$dirty")'): commit them, or pass --allow-dirty"
    commit="$commit + uncommitted changes (--allow-dirty: $(wc -l <<< "$dirty") path(s))"
  fi
  command -v nvidia-smi > /dev/null || refuse "no nvidia-smi: this is not a GPU machine"
  local gpu
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)
  [ -n "$gpu" ] || refuse "nvidia-smi sees no GPU"
  if [ ! -d .gpu-bundle/debs ] || [ ! -f .gpu-bundle/ffmpeg.tar.gz ]; then
    refuse "no .gpu-bundle/ (debs/ and ffmpeg.tar.gz): run scripts/gpu-bundle.sh on a Debian 12 machine and carry .gpu-bundle"
  fi
  python=${PYTHON:-$(command -v python3)}
  [ -n "$python" ] || refuse "no python3"
  local info k v torch_v='' torch_cuda='' cuda_ok=0 prefix='' nccl_v=none nccl_code=0 nccl_dir=''
  info=$("$python" - 2>&1 <<'PY'
import torch
print("torch", torch.__version__)
print("torch_cuda", torch.version.cuda)
print("cuda_ok", int(torch.cuda.is_available()))
print("prefix", torch.utils.cmake_prefix_path)
try:
    v = torch.cuda.nccl.version()
    v = tuple(v) if isinstance(v, (tuple, list)) else (v // 1000, v // 100 % 10, v % 100) if v < 10000 else (v // 10000, v // 100 % 100, v % 100)
    print("nccl", ".".join(map(str, v[:3])))
    print("nccl_code", v[0] * 10000 + v[1] * 100 + v[2])
except Exception as e:
    print("nccl_error", str(e).replace("\n", " "))
try:
    import nvidia.nccl
    print("nccl_dir", list(nvidia.nccl.__path__)[0])
except Exception:
    pass
PY
  ) || refuse "$python has no usable torch: $(tail -1 <<< "$info")"
  while read -r k v; do
    case $k in
      torch) torch_v=$v ;; torch_cuda) torch_cuda=$v ;; cuda_ok) cuda_ok=$v ;; prefix) prefix=$v ;;
      nccl) nccl_v=$v ;; nccl_code) nccl_code=$v ;; nccl_dir) nccl_dir=$v ;;
    esac
  done <<< "$info"
  [ -n "$torch_v" ] || refuse "$python has no usable torch (it printed no version)"
  [ "$cuda_ok" = 1 ] || refuse "$python's torch $torch_v (CUDA ${torch_cuda}) sees no CUDA device"

  # The record.
  out=${OUT:-/tmp/evl-gpu-check}
  logdir=$out/logs
  runs=/tmp/evl-gpu-check-runs
  mkdir -p "$logdir" "$runs" || exit 2
  local gpu_tag today record
  gpu_tag=$(tr '[:upper:]' '[:lower:]' <<< "$gpu" | sed -e 's/^nvidia //' -e 's/ .*//' -e 's/[^a-z0-9]/_/g')
  today=$(date -u +%F)
  record=$out/gpu_check_${gpu_tag}_${today}.txt
  : > "$record"
  trap 'tar -C "$out" -czf "$out/logs.tar.gz" logs 2>/dev/null && rm -rf "$logdir"' EXIT
  say() { printf '%s\n' "$*" | tee -a "$record"; }
  emit() { tee -a "$record"; }
  nvidia-smi > "$logdir/nvidia-smi.log" 2>&1
  say "evl GPU check (bench/gpu_check.sh), $(date -u '+%F %T') UTC"
  say "commit  $commit"
  local mem drv
  IFS=', ' read -r mem _ drv < <(nvidia-smi --query-gpu=memory.total,driver_version --format=csv,noheader | head -1)
  say "GPU     $gpu, $mem MiB, driver $drv; $(nvidia-smi -L | wc -l) GPU(s) visible, $(nproc) cores"
  say "torch   $torch_v (CUDA $torch_cuda), $python"
  say "NCCL    $nccl_v (python: torch.cuda.nccl.version()) ${nccl_dir:+in $nccl_dir}"

  local budget_s=470 t0=$SECONDS
  local deadline=$((t0 + budget_s)) passed=0 failed=0 bench_ok=0 bench_failed=0
  # check NAME SECONDS -- CMD...: CMD under `timeout` (SECONDS, cut to what is left of the budget),
  # its output in logs/NAME.log; one line PASS/FAIL with the elapsed seconds, its RESULT lines, and
  # on failure the log's last lines. `bench` is the same for benchmarks, counted apart.
  run_step() {
    local kind=$1 name=$2 limit=$3 left rc el why t
    [ "$4" = -- ] || { echo "gpu_check: $kind $name: usage: $kind NAME SECONDS -- CMD..." >&2; exit 3; }
    shift 4
    left=$((deadline - SECONDS))
    if ((left < 10)); then
      say "$(printf 'FAIL  %-24s    - s  (not run: %d s left of the %d s budget)' "$name" "$left" "$budget_s")"
      return 1
    fi
    ((limit > left)) && limit=$left
    t=$SECONDS
    timeout -k 5 "$limit" "$@" > "$logdir/$name.log" 2>&1 < /dev/null
    rc=$?
    el=$((SECONDS - t))
    if ((rc == 0)); then
      say "$(printf 'PASS  %-24s %4d s' "$name" "$el")"
    else
      why="exit status $rc"
      ((rc == 124)) && why="timed out after $limit s"
      ((rc == 137)) && why="killed (SIGKILL; after $limit s if by timeout)"
      say "$(printf 'FAIL  %-24s %4d s  (%s; logs/%s.log)' "$name" "$el" "$why" "$name")"
    fi
    grep -a '^RESULT: ' "$logdir/$name.log" | sed 's/^RESULT: /      /' | emit
    if ((rc != 0)); then  # the log's last lines, less RESULT lines and Open MPI's boxed boilerplate
      grep -av '^RESULT: ' "$logdir/$name.log" | awk '/^-----+$/ { box = !box; next } !box' | tail -n 12 |
        sed 's/^/      | /' | emit
    fi
    return "$rc"
  }
  check() {
    if run_step check "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); return 1; fi
  }
  bench() {
    local ok=1 log=$logdir/$1.log
    run_step benchmark "$@" || ok=0
    [ -f "$log" ] && grep -aE '^(EVL |python \(|evl |    )' "$log" | sed 's/^/      /' | emit
    [ -f "$log" ] && { bench_figures "$log" | emit; ((PIPESTATUS[0] == 0)) || ok=0; }
    if ((ok)); then bench_ok=$((bench_ok + 1)); else bench_failed=$((bench_failed + 1)); return 1; fi
  }

  say ""
  say "== setup and build (build-gpu/)"
  local envfile=$runs/bundle.env
  # shellcheck disable=SC2016,SC1090  # "$0" is the inner shell's; the environment gpu-unbundle.sh prints
  check bundle 60 -- bash -c 'scripts/gpu-unbundle.sh .gpu-bundle > "$0"' "$envfile" && . "$envfile"
  local nccl_args=() nccl_libs=()
  [ -n "$nccl_dir" ] && nccl_libs=("$nccl_dir"/lib/libnccl.so*)
  if [ -e "${nccl_libs[0]:-}" ]; then
    nccl_args=(-DNCCL_INCLUDE_DIR="$nccl_dir/include" -DNCCL_LIBRARY="${nccl_libs[0]}")
    export LD_LIBRARY_PATH=$nccl_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  # The tests need GoogleTest: on the machine, or from the bundle (libgtest-dev, scripts/gpu-bundle.sh).
  local gtest=OFF
  [ -f /usr/include/gtest/gtest.h ] || [ -f /usr/local/include/gtest/gtest.h ] && gtest=ON
  check configure 90 -- cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
    -DEVL_BUILD_TESTS=$gtest "${nccl_args[@]}" -DCUDAToolkit_ROOT=/usr/local/cuda \
    -DProtobuf_INCLUDE_DIR=/opt/evl-protobuf/include
  grep -E '^-- (Found (Torch|MPI|NCCL)|NCCL|GoogleTest)' "$logdir/configure.log" | sed 's/^/      /' | emit
  check build_evl 240 -- cmake --build build-gpu -j "$(nproc)" --target evl evl_model_bench
  if [ "$gtest" = ON ]; then
    check build_tests 150 -- cmake --build build-gpu -j "$(nproc)" --target precision_test
  else
    say "$(printf 'FAIL  %-24s    - s  (no GoogleTest on this machine or in the bundle: precision_test cannot be built; scripts/gpu-bundle.sh carries libgtest-dev)' build_tests)"
    failed=$((failed + 1))
  fi

  evl=build-gpu/launcher/evl
  export evl python runs GLOG_logtostderr=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
  export -f cuda_args cpu_small_args precision_fp16 train_cuda_crash train_cuda_resume first_step_fp16_vs_fp32 \
    heldout_top1 eval_cuda predict_cuda stalled_rank killed_rank world2_nccl_vs_mpi
  if check evl_info 30 -- "$evl" info; then
    sed 's/^/      /' "$logdir/evl_info.log" | emit
  fi

  say ""
  say "== correctness"
  check precision_fp16 90 -- bash -c precision_fp16
  check train_cuda_crash 90 -- bash -c train_cuda_crash
  check train_cuda_resume 90 -- bash -c train_cuda_resume
  check first_step_fp16_vs_fp32 60 -- bash -c first_step_fp16_vs_fp32
  check heldout_top1 15 -- bash -c heldout_top1
  check eval_cuda 60 -- bash -c eval_cuda
  check predict_cuda 60 -- bash -c predict_cuda
  check stalled_rank 60 -- bash -c stalled_rank
  check killed_rank 60 -- bash -c killed_rank
  if ((nccl_code >= 23003)); then
    check world2_nccl_vs_mpi 150 -- bash -c world2_nccl_vs_mpi
  else
    say "NOTE  world-2 NCCL: not run (NCCL $nccl_v has no multi-rank-per-GPU; needs >= 2.30.3)"
  fi
  say "checks: $passed passed, $failed failed ($((SECONDS - t0)) s)"

  if [ "$skip_bench" = 0 ]; then
    say ""
    say "== benchmarks (not checks)"
    local bin=build-gpu/bench/evl_model_bench official=()
    if [ -f .gpu-bundle/official/model.py ]; then
      official=(--official-repo .gpu-bundle/official)
    else
      say "NOTE  no .gpu-bundle/official/model.py: the Python side is evl's own reference, not the official model.py"
    fi
    bench bench_b16_8f 120 -- "$bin" --device cuda --preset B16 --frames 8 --batch 32 --iters 10 --threads 8 \
      --python "$python" "${official[@]}"
    bench bench_l14_16f 150 -- "$bin" --device cuda --preset L14 --frames 16 --batch 8 --iters 5 --threads 8 \
      --python "$python" "${official[@]}"
    say "benchmarks: $bench_ok ran, $bench_failed failed"
  fi

  say ""
  say "total $((SECONDS - t0)) s; record $record"
  say "$passed passed, $failed failed"
  ((failed == 0 && passed > 0))
}

[ "${BASH_SOURCE[0]}" = "$0" ] && main "$@"
