#!/usr/bin/env python3
"""Checks the scaling model's all-reduce term on the simulated cluster (docs/scaling.md).

  cluster_bandwidth.py --evl build/launcher/evl --cluster DIR [--rates 25mbit,50mbit,100mbit] [--check]

Brings up 2 simulated nodes (tests/cluster/netns-cluster.sh, root), trains the quick-start model
with one rank per node, first unlimited, then with each node's link shaped to each rate (tc tbf),
and reads from the log the step time, the communication wait share and the gradient bytes. The
model (the unlimited run's wait plus the ring's bytes over the rate, divided by one fitted
efficiency) must meet every rate (bench/scaling_model.py validate). With --check, exits 1 when a
rate is off by more than --margin.

The quick-start decoder's gradient is 0.46 MB, so the rates are 25-100 Mbit/s: they put the
all-reduce at 50-300% of the compute time, the regime of ViT-B/16's 133 MB over 10-25 Gbit/s
Ethernet. Faster rates leave a wait of a few ms, within the run-to-run noise of the unlimited
run's wait (1-18 ms measured on this 2-core machine), so they cannot check the model.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scaling_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER_SH = os.path.join(HERE, "..", "tests", "cluster", "netns-cluster.sh")


def rate_bits(rate):
    m = re.fullmatch(r"([0-9.]+)(kbit|mbit|gbit)", rate)
    return float(m.group(1)) * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)]


def run(evl, cluster, run_dir, steps, env_extra):
    env = dict(os.environ)
    with open(os.path.join(cluster, "env")) as f:
        for line in f:
            k, v = line.replace("export ", "", 1).strip().split("=", 1)
            env[k] = v
    env.update(env_extra)
    cmd = [evl, "launch", "-n", "2", "--hosts", "node0:1,node1:1", "--", "train", "--set", "data.synthetic.enabled=true",
           "--set", f"train.num_steps={steps}", "--set", "train.threads=1", "--set", "train.eval_freq=0",
           "--set", "train.save_freq=0", "--set", "train.print_freq=10", "--set", f"train.run_dir={run_dir}"]
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.exit(f"cluster_bandwidth: training failed:\n{out.stdout}")
    grad = int(re.search(r"gradient bucket\(s\), (\d+) bytes\)", out.stdout).group(1))
    batch = int(re.search(r"global batch (\d+)", out.stdout).group(1))
    windows = re.findall(r"step (\d+)/\d+ .*? clips/s ([0-9.]+) .*?comm-wait ([0-9.]+)%", out.stdout)
    # The first window holds start-up (first allocations, connection set-up): left out.
    steps_s = [batch / float(c) for _, c, _ in windows[1:]]
    comm_s = [batch / float(c) * float(w) / 100 for _, c, w in windows[1:]]
    return grad, statistics.median(steps_s), statistics.median(comm_s)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evl", required=True)
    ap.add_argument("--cluster", required=True, help="a directory for the simulated cluster (not under /tmp)")
    ap.add_argument("--rates", default="25mbit,50mbit,100mbit")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--margin", type=float, default=0.35)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    cluster = os.path.abspath(a.cluster)
    up = subprocess.run([CLUSTER_SH, "up", cluster, "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if up.returncode == 77:
        print(up.stdout)
        return 77
    if up.returncode != 0:
        sys.exit(up.stdout)
    try:
        measured, grad = [], 0
        # Ring all-reduce in Open MPI too (its default for 2 ranks is reduce + broadcast, one
        # direction at a time): the algorithm NCCL uses and the model describes.
        ring = {"OMPI_MCA_coll_tuned_use_dynamic_rules": "1", "OMPI_MCA_coll_tuned_allreduce_algorithm": "4"}
        for rate in ["none"] + a.rates.split(","):
            subprocess.run([CLUSTER_SH, "limit", cluster, rate], check=True)
            with tempfile.TemporaryDirectory(dir=cluster) as run_dir:
                grad, step_s, comm_s = run(a.evl, cluster, run_dir, a.steps, ring)
            measured.append(dict(rate_bit_s=None if rate == "none" else rate_bits(rate), step_s=step_s, comm_s=comm_s))
            print(f"rate {rate:>8}: step {1e3 * step_s:6.1f} ms, communication wait {1e3 * comm_s:6.1f} ms "
                  f"({100 * comm_s / step_s:4.1f}%)", flush=True)
    finally:
        subprocess.run([CLUSTER_SH, "down", cluster])
    result, ok = scaling_model.validate(measured, grad, p=2, margin=a.margin)
    print(f"gradient {grad} bytes; wait without a limit {1e3 * result['base_comm_s']:.1f} ms; fitted ring efficiency "
          f"{result['eff']:.2f}")
    print("| rate | measured wait ms | model ms | error | measured share | model share |")
    print("|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['rate_bit_s'] / 1e6:g} Mbit/s | {1e3 * r['measured_comm_s']:.1f} | {1e3 * r['predicted_comm_s']:.1f} | "
              f"{100 * r['error']:+.0f}% | {100 * r['measured_share']:.0f}% | {100 * r['predicted_share']:.0f}% |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(measured=measured, gradient_bytes=grad, **result), f, indent=1)
    if a.check and not ok:
        print(f"cluster_bandwidth: a prediction is off by more than {100 * a.margin:.0f}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
