"""Training throughput of ``python -m minimovq train`` for 1 and 2 processes (images/s, scaling efficiency).

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py                    # CPU, gloo: 1 and 2 processes
    python benchmarks/bench_scale.py --device cuda --model movq --config small --batch-size 64

Each row runs the real command (under torchrun for N > 1) for ``--steps`` steps of the same global batch and
reads the rate between step ``--warmup`` and the last step from ``metrics.jsonl``, so start-up, the first
(slow) steps and checkpoint writing are not counted. Scaling efficiency = rate(N) / (N · rate(1)). On CPU each
process gets OMP_NUM_THREADS=1, so N processes use N cores; a machine with fewer free cores than N shows it.
On CUDA the rows go up to the number of GPUs (NCCL).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def throughput(procs: int, args) -> float:
    with tempfile.TemporaryDirectory() as out:
        launcher = [sys.executable] if procs == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        cmd = [*launcher, "-m", "minimovq", "train", "--model", args.model, "--config", args.config,
               "--data", "shapes", "--num-images", str(4 * args.batch_size), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--log-every", "1",
               "--ckpt-every", str(10 * args.steps), "--sample-every", str(10 * args.steps), "--workers", "0",
               "--device", args.device, "--out", out]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MINIMOVQ_OFFLINE": "1",
               "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        rows = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
        a, b = rows[args.warmup - 1], rows[-1]
        return (b["step"] - a["step"]) * args.batch_size / (b["seconds"] - a["seconds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="vqvae")
    p.add_argument("--config", default="small")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32, help="global batch")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--procs", type=int, nargs="*", default=None, help="default: 1 2 (CPU), 1..#GPUs (CUDA)")
    args = p.parse_args()
    if args.procs is None:
        import torch

        n = torch.cuda.device_count() if args.device == "cuda" else 2
        args.procs = [k for k in (1, 2, 4, 8) if k <= n] or [1]
    print(f"{args.model}/{args.config}, {args.image_size} px, global batch {args.batch_size}, device {args.device}")
    print(f"{'processes':>10} {'images/s':>10} {'speed-up':>9} {'efficiency':>11}")
    base = None
    for k in args.procs:
        rate = throughput(k, args)
        base = base or rate
        print(f"{k:>10} {rate:>10.1f} {rate / base:>8.2f}x {rate / (k * base):>10.0%}")


if __name__ == "__main__":
    main()
