"""Forward+backward time and peak memory of every Lesson 6 quantizer, in one run, at the same rate.

    OMP_NUM_THREADS=1 python benchmarks/bench_modern_quantizers.py               # N = 32768 vectors, CPU
    python benchmarks/bench_modern_quantizers.py --device cuda

Every quantizer quantizes N latent vectors to one of 512 codes, implicit or explicit (9 bits): VQ and EMA VQ with
K = 512 codes of width D = 64, the same with the rotation trick, FSQ (8, 8, 8) with D = 3, LFQ with D = 9 (its
entropy penalty included, computed exactly over the 512 corners, and once more with the per-bit factorised codebook
entropy that large d uses) and RVQ with 3 stages of 8 codes, D = 64. The
step is ``forward(z)``, then ``(vq_loss + mean(z_q)).backward()``.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` during one step minus the memory allocated before it. On the
CPU each quantizer runs in a fresh subprocess and reports its resident-set high-water mark after the step minus
its resident set before it (``ru_maxrss`` and ``/proc/self/statm``), after a small warm-up step.
Time: the median of ``--repeats`` steps after one warm-up step.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minimovq.fsq import FSQ  # noqa: E402
from minimovq.lfq import LFQ  # noqa: E402
from minimovq.quantize import EMAVectorQuantizer, VectorQuantizer  # noqa: E402
from minimovq.rvq import ResidualVQ  # noqa: E402

ARMS = {  # name -> (constructor, D)
    "VQ (K=512)": (lambda: VectorQuantizer(512, 64), 64),
    "VQ + rotation trick": (lambda: VectorQuantizer(512, 64, rotation_trick=True), 64),
    "EMA VQ (K=512)": (lambda: EMAVectorQuantizer(512, 64), 64),
    "FSQ (8, 8, 8)": (lambda: FSQ([8, 8, 8]), 3),
    "LFQ (9 bits)": (lambda: LFQ(9), 9),
    "LFQ, factorised H": (lambda: LFQ(9, exact_entropy_max_dim=0), 9),
    "RVQ (3 x 8)": (lambda: ResidualVQ(3, 8, 64), 64),
}


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(name: str, n: int, repeats: int, device: str) -> dict:
    make, d = ARMS[name]
    torch.manual_seed(0)
    q = make().to(device).train()
    if n % 1024:
        raise ValueError(f"--n must be a multiple of 1024 (latents of shape (n / 1024, D, 32, 32)), got {n}")
    z = torch.randn(n // 1024, d, 32, 32, device=device, requires_grad=True)  # N = n vectors of width D

    def step():
        z.grad = None
        z_q, loss, _ = q(z)
        (loss + z_q.float().mean()).backward()

    small = torch.randn(1, d, 8, 8, device=device, requires_grad=True)
    z_q, loss, _ = q(small)
    (loss + z_q.float().mean()).backward()  # warm-up on a tiny input: kernels loaded, not counted
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        sync()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = current_rss()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return {"ms": 1000 * statistics.median(times), "peak_mib": max(peak, 0) / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32768, help="latent vectors, a multiple of 1024 (default 32768)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.n, args.repeats, args.device)))
        return
    print(f"N = {args.n} vectors, 512 codes (9 bits) each, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'quantizer':<22}{'D':>4}{'fwd+bwd ms':>12}{'peak MiB':>10}")
    for name, (_, d) in ARMS.items():
        if args.device == "cpu":
            out = subprocess.run([sys.executable, __file__, "--child", name, "--n", str(args.n),
                                  "--repeats", str(args.repeats), "--device", "cpu"],
                                 capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            res = run_one(name, args.n, args.repeats, args.device)
        print(f"{name:<22}{d:>4}{res['ms']:>12.1f}{res['peak_mib']:>10.1f}")


if __name__ == "__main__":
    main()
