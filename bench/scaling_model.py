#!/usr/bin/env python3
"""How evl's training step scales from 1 to 512 GPUs: a model on measured inputs (docs/scaling.md).

  scaling_model.py                      tables for the ViT-B/16 and ViT-L/14 recipes
  scaling_model.py --recipe b16 --net-gbit 100 --latency-us 5 --cores-per-gpu 16 --clips-per-core 50
  scaling_model.py --json               the same as JSON

One step of data-parallel EVL on p GPUs (global batch B, b = B/p clips per GPU):

  compute   t_c = b * per-clip step time (measured: frozen backbone forward, decoder forward and
            backward, AdamW; AdamW does not shrink with b but is small)
  all-reduce of the decoder gradients, S bytes, ring (NCCL's, and Open MPI's for large messages):
            t_ar = 2 (p-1)/p * S / (eff * bw) + 2 (p-1) * latency
            bw: the slowest link of the ring, NVLink inside a node, the node's network outside;
            eff: the share of the link rate a ring achieves (calibrated, see validate())
  hidden    gradient buckets (dist.bucket_size_mb) are all-reduced while backward goes on: at most
            t_bwd * (n-1)/n of t_ar is hidden, never the last bucket
  loader    clips/s a GPU can get = cores per GPU * clips/s per core; the step cannot be faster
  step      max(t_c + exposed all-reduce, b / loader rate)

Checkpoints (trainable parameters + AdamW moments, written by rank 0 in the background) cost a host
copy per save; a restart costs the requeue, start-up, and every rank reading the checkpoint from the
shared filesystem (evl does that today), plus on average half a save interval of lost steps.
Standard library only.
"""
import argparse
import json
import math
import sys

# Measured inputs (docs/benchmarks.md; docs/gpu_check_h200_2026-11-27.txt; the decoder sizes from
# the official model.py with its head). Per-clip times from batch 32 on one H200 in FP16.
RECIPES = {
    "b16": dict(
        name="ViT-B/16, 8 frames, decoder 4x768",
        grad_bytes=33_183_376 * 4,  # 33.2 M trainable parameters, FP32 gradients
        clip_fwd_s=(0.050464 + 0.022447) / 32,  # backbone + decoder forward
        clip_bwd_s=0.015868 / 32,
        adamw_s=0.005238,
        measured="H200, batch 32: 345 clips/s (bench/gpu_check.sh, 2026-11-27)",
    ),
    "l14": dict(
        name="ViT-L/14, 16 frames, decoder 4x1024",
        grad_bytes=58_760_592 * 4,
        # Not measured: ViT-B/16's times scaled by FLOPs (backbone 4.6x per frame, 2x frames;
        # decoder (1024/768)^2 x 2 frames x 257/197 tokens).
        clip_fwd_s=(0.050464 * 9.2 + 0.022447 * 4.6) / 32,
        clip_bwd_s=0.015868 * 4.6 / 32,
        adamw_s=0.005238 * 58.76 / 33.18,
        measured="estimated from the ViT-B/16 measurement by FLOPs",
    ),
}
GLOBAL_BATCH = 256  # the paper's recipe (configs/k400_*.pbtxt)
TRAIN_CLIPS = 256 * 50_000  # 50 000 steps of 256 clips: ~50 epochs of K400's ~240k videos


def ring_allreduce_s(p, nbytes, bw_bytes_s, latency_s, eff=1.0):
    if p <= 1:
        return 0.0
    return 2.0 * (p - 1) / p * nbytes / (eff * bw_bytes_s) + 2.0 * (p - 1) * latency_s


def exposed_allreduce_s(t_ar, t_bwd, n_buckets):
    """The part of the all-reduce backward does not hide: the last bucket at least."""
    n = max(1, n_buckets)
    return max(t_ar / n, t_ar - t_bwd * (n - 1) / n)


def step(recipe, p, a):
    r = RECIPES[recipe]
    b = GLOBAL_BATCH / p
    t_bwd = b * r["clip_bwd_s"]
    t_c = b * (r["clip_fwd_s"] + r["clip_bwd_s"]) + r["adamw_s"]
    nodes = math.ceil(p / a.gpus_per_node)
    bw = a.nvlink_gbyte * 1e9 if nodes == 1 else a.net_gbit * 1e9 / 8
    t_ar = ring_allreduce_s(p, r["grad_bytes"], bw, a.latency_us * 1e-6, a.eff)
    n_buckets = math.ceil(r["grad_bytes"] / (a.bucket_mb * 1024 * 1024))
    t_exp = exposed_allreduce_s(t_ar, t_bwd, n_buckets)
    loader_clips_s = a.cores_per_gpu * a.clips_per_core
    t_loader = b / loader_clips_s
    t_step = max(t_c + t_exp, t_loader)
    ckpt_bytes = 3 * r["grad_bytes"] + 4096
    restart_s = a.requeue_s + a.startup_s + p * ckpt_bytes / (a.fs_read_gbyte * 1e9)
    lost_s = a.save_every / 2 * t_step
    clips_s = GLOBAL_BATCH / t_step
    return dict(
        gpus=p, nodes=nodes, clips_per_gpu=b, compute_ms=1e3 * t_c, allreduce_ms=1e3 * t_ar,
        exposed_ms=1e3 * t_exp, loader_ms=1e3 * t_loader, step_ms=1e3 * t_step, clips_s=clips_s,
        efficiency=clips_s / (p * (1.0 / (r["clip_fwd_s"] + r["clip_bwd_s"]))),
        loader_bound=t_loader > t_c + t_exp, cores_needed_per_gpu=(b / (t_c + t_exp)) / a.clips_per_core,
        restart_s=restart_s, lost_s=lost_s, ckpt_read_s=p * ckpt_bytes / (a.fs_read_gbyte * 1e9),
        gpu_hours=TRAIN_CLIPS / clips_s * p / 3600,
        feasible=b >= 1,
    )


def table(recipe, a):
    rows = [step(recipe, p, a) for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)]
    r = RECIPES[recipe]
    out = [f"{r['name']}: gradient {r['grad_bytes'] / 1e6:.1f} MB, {r['measured']}",
           f"network {a.net_gbit:g} Gbit/s per node, latency {a.latency_us:g} us, NVLink {a.nvlink_gbyte:g} GB/s, "
           f"{a.gpus_per_node} GPUs/node, loader {a.cores_per_gpu} cores/GPU x {a.clips_per_core:g} clips/s/core, "
           f"global batch {GLOBAL_BATCH}",
           "| GPUs | clips/GPU | compute ms | all-reduce ms | exposed ms | loader ms | step ms | clips/s | "
           "efficiency | cores/GPU to feed | restart s (ckpt reads) | lost work s | GPU-hours (50 ep) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        if not s["feasible"]:
            out.append(f"| {s['gpus']} | {s['clips_per_gpu']:.2g} | — global batch {GLOBAL_BATCH} has fewer clips than GPUs |"
                       + " |" * 10)
            continue
        out.append(f"| {s['gpus']} | {s['clips_per_gpu']:g} | {s['compute_ms']:.1f} | {s['allreduce_ms']:.1f} | "
                   f"{s['exposed_ms']:.1f} | {s['loader_ms']:.1f}{' (bound)' if s['loader_bound'] else ''} | "
                   f"{s['step_ms']:.1f} | {s['clips_s']:.0f} | {100 * s['efficiency']:.0f}% | "
                   f"{s['cores_needed_per_gpu']:.0f} | {s['restart_s']:.0f} ({s['ckpt_read_s']:.0f}) | {s['lost_s']:.0f} | "
                   f"{s['gpu_hours']:.1f} |")
    return rows, "\n".join(out)


def validate(measured, grad_bytes, p=2, margin=0.25):
    """Checks the all-reduce term against bandwidth-limited runs (bench/cluster_bandwidth.py).

    measured: [{"rate_bit_s": R, "step_s": T, "comm_s": C}]: one unlimited run (R None) and runs
    at several rates. The model says C = base + ring_allreduce_s(p, S, R / 8) / eff: base (latency,
    load imbalance) is the unlimited run's wait, eff (the share of the link rate the ring achieves)
    is the one fitted number (geometric mean over the rates). The model holds when every rate's
    measured wait is within `margin` of it. Returns (result, ok).
    """
    base = next(m for m in measured if not m["rate_bit_s"])["comm_s"]
    limited = sorted((m for m in measured if m["rate_bit_s"]), key=lambda m: m["rate_bit_s"])
    xs = [ring_allreduce_s(p, grad_bytes, m["rate_bit_s"] / 8, 0.0) for m in limited]
    ratios = [max(1e-9, m["comm_s"] - base) / x for m, x in zip(limited, xs)]
    eff = 1.0 / math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    rows, ok = [], True
    for m, x in zip(limited, xs):
        pred = base + x / eff
        other = m["step_s"] - m["comm_s"]
        err = (pred - m["comm_s"]) / m["comm_s"]
        ok = ok and abs(err) <= margin
        rows.append(dict(rate_bit_s=m["rate_bit_s"], measured_comm_s=m["comm_s"], predicted_comm_s=pred,
                         measured_share=m["comm_s"] / m["step_s"], predicted_share=pred / (other + pred), error=err))
    return dict(eff=eff, base_comm_s=base, margin=margin, rows=rows), ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=sorted(RECIPES), action="append")
    ap.add_argument("--net-gbit", type=float, default=100.0, help="network bandwidth per node")
    ap.add_argument("--latency-us", type=float, default=5.0, help="per-hop latency")
    ap.add_argument("--nvlink-gbyte", type=float, default=150.0, help="ring bandwidth inside a node, GB/s")
    ap.add_argument("--eff", type=float, default=0.8, help="share of the link rate a ring achieves")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--bucket-mb", type=float, default=25.0, help="dist.bucket_size_mb")
    ap.add_argument("--cores-per-gpu", type=int, default=16)
    ap.add_argument("--clips-per-core", type=float, default=15.2,
                    help="loader clips/s per core (15.2: train + RandAugment on K400-like footage today)")
    ap.add_argument("--fs-read-gbyte", type=float, default=5.0, help="shared filesystem's aggregate read rate, GB/s")
    ap.add_argument("--requeue-s", type=float, default=60.0, help="Slurm requeue to start, s")
    ap.add_argument("--startup-s", type=float, default=20.0, help="process, MPI and NCCL start-up, CLIP load, s")
    ap.add_argument("--save-every", type=int, default=5000, help="train.save_freq, steps")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = {}
    for recipe in a.recipe or sorted(RECIPES):
        rows, text = table(recipe, a)
        out[recipe] = rows
        if not a.json:
            print(text + "\n")
    if a.json:
        json.dump(out, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
