"""Forward+backward time and peak memory of minimovq's VectorQuantizer against a straightforward one-hot VQ.

    OMP_NUM_THREADS=1 python benchmarks/bench_quantize.py                  # N=32768, K=8192, D=64 on the CPU
    python benchmarks/bench_quantize.py --device cuda

Both versions quantize the same z (N vectors of width D) with the same codebook (K codes), compute the VQ loss
and the perplexity, and backpropagate ``loss + mean(z_q)``. The one-hot version is the classic formulation:
the full (N, K) distance matrix, an (N, K) one-hot matrix from ``scatter_``, ``z_q = one_hot @ codebook`` and
the perplexity from the one-hot's mean. minimovq's version computes distances in (chunk, K) blocks under
no_grad, looks codes up with an embedding and counts with bincount.

How memory is measured:
* CPU: each version runs in a fresh subprocess. Peak = the process's resident-set high-water mark after one
  forward+backward (``resource.getrusage(...).ru_maxrss``) minus its current resident set just before it
  (``/proc/self/statm``), i.e. the extra memory the OS had to give the step, allocator overhead included. A
  tiny warm-up pass runs first so that loading kernels is not counted. For a version that stays below an
  earlier high-water mark this is an upper bound.
* CUDA: ``torch.cuda.max_memory_allocated`` during one forward+backward, minus the memory allocated before it.

Time is the median of ``--repeats`` forward+backward passes after one warm-up pass.

Against another library on the same work (the EMA quantizer vs vector-quantize-pytorch): ``bench_vs_vqp.py``.
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
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minimovq.quantize import VectorQuantizer, perplexity  # noqa: E402


def one_hot_vq(z: torch.Tensor, codebook: torch.Tensor, beta: float = 0.25):
    """The straightforward formulation: z (B, D, H, W) -> z_q, loss, indices (N,), perplexity."""
    B, D, H, W = z.shape
    flat = rearrange(z, "b d h w -> (b h w) d")
    dist = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()  # (N, K)
    indices = dist.argmin(1)
    one_hot = torch.zeros(flat.shape[0], codebook.shape[0], device=z.device).scatter_(1, indices[:, None], 1)
    z_q = rearrange(one_hot @ codebook, "(b h w) d -> b d h w", b=B, h=H, w=W)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())
    avg = one_hot.mean(0)
    ppl = torch.exp(-(avg * torch.log(avg + 1e-10)).sum())
    return z + (z_q - z).detach(), loss, indices, ppl


def make_step(impl: str, z: torch.Tensor, codebook: torch.Tensor):
    if impl == "one-hot":
        w = codebook.clone().requires_grad_()

        def step():
            z_q, loss, idx, ppl = one_hot_vq(z, w)
            (loss + z_q.mean()).backward()
            return idx, loss, ppl
    else:
        q = VectorQuantizer(codebook.shape[0], codebook.shape[1]).to(z.device)
        q.embedding.weight.data.copy_(codebook)

        def step():
            z_q, loss, idx = q(z)
            ppl = perplexity(idx, q.n_embed)
            (loss + z_q.mean()).backward()
            return idx.flatten(), loss, ppl
    return step


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(impl: str, n: int, k: int, d: int, repeats: int, device: str) -> dict:
    """Measure one implementation in this process (called in a fresh subprocess on the CPU)."""
    # a tiny warm-up first, so that loading kernels and libraries is not counted as the step's memory
    make_step(impl, torch.randn(1, d, 8, 8, device=device).requires_grad_(), torch.randn(64, d, device=device))()
    torch.manual_seed(0)  # both versions get the same z and codebook
    shape = (n // 4096, d, 64, 64) if n % 4096 == 0 else (1, d, 1, n)  # N=32768: 8 latents of 64×64
    z = torch.randn(shape, device=device).requires_grad_()
    codebook = torch.randn(k, d, device=device) * 0.5
    step = make_step(impl, z, codebook)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        idx, loss, ppl = step()
        sync()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = current_rss()
        idx, loss, ppl = step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(repeats):
        z.grad = None
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return dict(impl=impl, seconds=statistics.median(times), peak_bytes=peak, loss=float(loss),
                perplexity=float(ppl), checksum=int(idx.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=32768, help="vectors (64×64 grids when N %% 4096 == 0)")
    parser.add_argument("--k", type=int, default=8192, help="codebook size")
    parser.add_argument("--d", type=int, default=64, help="code width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:  # a fresh process per implementation: its resident-set high-water mark is its own
        print(json.dumps(run_one(args.worker, args.n, args.k, args.d, args.repeats, args.device)))
        return
    results = []
    for impl in ("one-hot", "minimovq"):
        if args.device == "cpu":
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--n", str(args.n), "--k",
                   str(args.k), "--d", str(args.d), "--repeats", str(args.repeats), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        else:
            results.append(run_one(impl, args.n, args.k, args.d, args.repeats, args.device))
    base, ours = results
    same = base["checksum"] == ours["checksum"] and abs(base["loss"] - ours["loss"]) < 1e-4 * abs(base["loss"])
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"VQ forward+backward, N={args.n}, K={args.k}, D={args.d} on {name}, torch {torch.__version__}")
    print(f"{'version':<10} {'time (s)':>10} {'peak memory (MiB)':>18} {'perplexity':>11}")
    for r in results:
        print(f"{r['impl']:<10} {r['seconds']:>10.3f} {r['peak_bytes'] / 2**20:>18.1f} {r['perplexity']:>11.1f}")
    print(f"speed-up {base['seconds'] / ours['seconds']:.1f}x, memory ratio "
          f"1/{base['peak_bytes'] / max(ours['peak_bytes'], 1):.0f}; same indices and loss: {same}")


if __name__ == "__main__":
    main()
