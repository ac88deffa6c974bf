"""minimovq's EMA vector quantizer against vector-quantize-pytorch's ``VectorQuantize`` on the same work:
forward+backward time and extra peak memory at N = 32,768 vectors, K = 8,192 codes, D = 64.

vector-quantize-pytorch is not a dependency of minimovq. Install it outside the project's environment, without
letting pip replace the torch you have, and put it on the path:

    pip install --no-deps --target /tmp/vqp vector-quantize-pytorch einx loguru torch-einops-utils frozendict
    PYTHONPATH=/tmp/vqp python benchmarks/bench_vs_vqp.py                   # CPU, 2 threads
    PYTHONPATH=/tmp/vqp python benchmarks/bench_vs_vqp.py --device cuda

(or ``pip install vector-quantize-pytorch`` into a separate virtual environment that also has minimovq). When the
library cannot be imported the script says how to install it and exits with status 1.

The same work on both sides: an EMA codebook (decay 0.99, eps 1e-5, Laplace smoothing, no k-means init, no
dead-code restarts), loss β·‖z − sg[z_q]‖² with β = 0.25, the same initial codebook and the same z (8 latents
of 64×64, so N = 32,768). vector-quantize-pytorch runs with ``rotation_trick=False`` (plain straight-through, as
minimovq's default) and ``accept_image_fmap=True`` (z is (B, D, H, W)). One pass is
``z_q, loss = q(z); (loss + z_q.mean()).backward()`` in train mode, so each pass also updates the EMA statistics.
The script checks that both pick the same codes and give the same loss on the first pass.

How it is measured: every measurement runs in a fresh subprocess, alternating minimovq and
vector-quantize-pytorch ``--repeats`` times. In each, a tiny warm-up pass loads the kernels; then the resident
set is read (after handing the heap's free pages back with ``malloc_trim``), one full pass runs, and the extra
peak memory is the resident-set high-water mark (``ru_maxrss``) minus that reading (CUDA:
``max_memory_allocated`` minus what was allocated before). Then ``--iters`` more passes are timed; a process
reports their median, and the table gives the median over processes and the spread.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minimovq.quantize import EMAVectorQuantizer  # noqa: E402

HOW = ("vector-quantize-pytorch is not importable. Install it without touching this environment's torch, e.g.\n"
       "  pip install --no-deps --target /tmp/vqp vector-quantize-pytorch einx loguru torch-einops-utils "
       "frozendict\n  PYTHONPATH=/tmp/vqp python benchmarks/bench_vs_vqp.py")


def vqp_version() -> str | None:
    try:
        import vector_quantize_pytorch  # noqa: F401
        from importlib.metadata import version
        return version("vector-quantize-pytorch")
    except Exception:  # ImportError, or a dependency of it missing
        return None


def make_quantizer(impl: str, codebook: torch.Tensor, beta: float, decay: float, eps: float):
    """A quantizer in train mode whose codebook (and EMA statistics) start at ``codebook`` (K, D), and a function
    z -> (z_q, loss, indices)."""
    K, D = codebook.shape
    if impl == "minimovq":
        q = EMAVectorQuantizer(K, D, beta=beta, decay=decay, eps=eps).to(codebook.device).train()
        with torch.no_grad():
            q.embedding.weight.copy_(codebook)
            q.embed_sum.copy_(codebook)  # m = e·N with N = 1: the codebook stays put until the first update
            q.cluster_size.fill_(1.0)

        def run(z):
            z_q, loss, idx = q(z)
            return z_q, loss, idx.flatten()
        return run
    from vector_quantize_pytorch import VectorQuantize
    q = VectorQuantize(dim=D, codebook_size=K, decay=decay, eps=eps, commitment_weight=beta, kmeans_init=False,
                       threshold_ema_dead_code=0, rotation_trick=False, accept_image_fmap=True)
    q = q.to(codebook.device).train()
    with torch.no_grad():
        q._codebook.embed.copy_(codebook[None])
        q._codebook.embed_avg.copy_(codebook[None])
        q._codebook.cluster_size.fill_(1.0)

    def run(z):
        z_q, idx, loss = q(z)
        return z_q, loss, idx.flatten()
    return run


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_free_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_one(impl: str, n: int, k: int, d: int, iters: int, device: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    beta, decay, eps = 0.25, 0.99, 1e-5
    # tiny warm-up: load kernels and libraries so that they do not count as the step's memory
    tiny = make_quantizer(impl, torch.randn(64, d, device=dev), beta, decay, eps)
    z_q, loss, _ = tiny(torch.randn(1, d, 4, 4, device=dev, requires_grad=True))
    (loss + z_q.mean()).backward()
    del tiny, z_q, loss
    torch.manual_seed(0)  # both implementations get the same z and codebook
    shape = (n // 4096, d, 64, 64) if n % 4096 == 0 else (1, d, 1, n)
    z = torch.randn(shape, device=dev).requires_grad_()
    run = make_quantizer(impl, torch.randn(k, d, device=dev) * 0.5, beta, decay, eps)

    def step():
        z.grad = None
        z_q, loss, idx = run(z)
        (loss + z_q.mean()).backward()
        return loss, idx

    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        release_free_memory()
        before = current_rss()
    loss, idx = step()
    sync()
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    first = dict(loss=float(loss), checksum=int(idx.sum()), same_shape=list(idx.shape))
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return dict(impl=impl, sec=statistics.median(times), peak_mib=max(peak, 0) / 2 ** 20, **first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=32768, help="vectors (64×64 grids when N %% 4096 == 0)")
    p.add_argument("--k", type=int, default=8192, help="codebook size")
    p.add_argument("--d", type=int, default=64, help="code width")
    p.add_argument("--iters", type=int, default=3, help="timed passes per process")
    p.add_argument("--repeats", type=int, default=3, help="processes per implementation, alternating")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(run_one(a.worker, a.n, a.k, a.d, a.iters, a.device, a.threads)))
        return
    version = vqp_version()
    if version is None:
        print(HOW, file=sys.stderr)
        raise SystemExit(1)
    runs: dict[str, list[dict]] = {"minimovq": [], "vector-quantize-pytorch": []}
    for _ in range(a.repeats):
        for impl in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--n", str(a.n), "--k", str(a.k),
                   "--d", str(a.d), "--iters", str(a.iters), "--threads", str(a.threads), "--device", a.device]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"the {impl} process failed:\n{out.stderr[-3000:]}")
            runs[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours, theirs = runs["minimovq"][0], runs["vector-quantize-pytorch"][0]
    same = ours["checksum"] == theirs["checksum"] and abs(ours["loss"] - theirs["loss"]) <= 1e-5 * abs(theirs["loss"])
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {a.threads} threads"
    print(f"EMA VQ forward+backward, N={a.n}, K={a.k}, D={a.d} on {where}; torch {torch.__version__}, "
          f"vector-quantize-pytorch {version}; {a.repeats} processes x {a.iters} passes each")
    print(f"  {'implementation':<24} {'s/pass (median)':>16} {'spread':>13} {'extra peak MiB':>15} {'spread':>13}")
    med = {}
    for impl, rs in runs.items():
        sec, mib = [r["sec"] for r in rs], [r["peak_mib"] for r in rs]
        med[impl] = statistics.median(sec), statistics.median(mib)
        print(f"  {impl:<24} {med[impl][0]:>16.3f} {f'{min(sec):.3f}-{max(sec):.3f}':>13} {med[impl][1]:>15.1f} "
              f"{f'{min(mib):.0f}-{max(mib):.0f}':>13}")
    speed = med["vector-quantize-pytorch"][0] / med["minimovq"][0]
    memory = med["minimovq"][1] / max(med["vector-quantize-pytorch"][1], 1e-9)
    share = f" (1/{1 / memory:.0f})" if 0 < memory < 1 else ""
    print(f"  minimovq: {speed:.1f}x the speed, {memory:.3g}x the extra peak memory{share}; "
          f"same codes and loss on the first pass: {same}")


if __name__ == "__main__":
    main()
