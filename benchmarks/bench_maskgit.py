"""MaskGIT's parallel decoding against KV-cached autoregressive sampling (Lesson 5, issue "Speed").

The same transformer (dim 256, depth 4, heads 8, K = 1024) samples a 16×16 token grid (G = 1):
MaskGIT with T = 8 steps, and a causal copy of it in raster order with a KV cache (256 steps). For batch 1
and 16 the table gives the sequential forward passes, the FLOPs per sample (counted by
``torch.utils.flop_counter``), and the wall time (the best of ``--repeats`` interleaved runs after a warm-up).
It ends with the training throughput of both priors in tokens/s.

    OMP_NUM_THREADS=1 python benchmarks/bench_maskgit.py            # CPU, plus the GPU when CUDA exists
    python benchmarks/bench_maskgit.py --devices cuda --repeats 10

MaskGIT does T full passes over N + 1 positions; the cached AR sampler does N passes of one position each,
about N/T·(1/N) = 1/T of the work per pass. So AR needs ~1/8 of MaskGIT's FLOPs but 32× more sequential
steps: MaskGIT wins when a step is latency-bound (batch 1, a GPU), and can lose when compute-bound.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from minimovq.maskgit import MaskGIT, make_optimizer, prior_loss
from minimovq.sampling import sample, sample_autoregressive

GRID, K, DIM, DEPTH, HEADS = (16, 16), 1024, 256, 4, 8


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns, device, repeats):
    """Best-of-``repeats`` wall time of each fn, runs interleaved so that load on a shared machine hits both."""
    for fn in fns.values():
        fn()  # warm-up (allocations, kernels, caches)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def count_passes(model, fn):
    """Sequential forward passes = calls of the output head (one per forward or decode_step)."""
    calls = []
    handle = model.head.register_forward_hook(lambda *a: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


def flops_per_sample(fn, batch):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / batch


def train_tokens_per_s(model, device, batch, steps, amp):
    opt, sched = make_optimizer(model, lr=3e-4, warmup=10)
    tokens = torch.randint(0, K, (batch, *GRID), device=device)
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = prior_loss(model, tokens)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * GRID[0] * GRID[1] * steps / (time.perf_counter() - t0)


def bench(device, batches, steps, repeats, train_batch, train_steps, amp):
    torch.manual_seed(0)
    mg = MaskGIT(K, GRID, DIM, DEPTH, HEADS).to(device).eval()
    ar = MaskGIT(K, GRID, DIM, DEPTH, HEADS, causal=True).to(device).eval()
    ar.load_state_dict(mg.state_dict())  # the same weights: only the attention mask differs
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else torch.no_grad
    rows = []
    mg_name = f"MaskGIT T={steps}"
    for b in batches:
        runs = {mg_name: (mg, lambda b=b: sample(mg, b, steps=steps)),
                "AR + KV cache": (ar, lambda b=b: sample_autoregressive(ar, b))}
        with ctx():
            sec = timed({name: fn for name, (_, fn) in runs.items()}, device, repeats)
            for name, (model, fn) in runs.items():
                flops = flops_per_sample(fn, b) if b == batches[0] else None
                rows.append((device.type, b, name, count_passes(model, fn), flops, sec[name]))
        rows.append((device.type, b, "speed-up (AR time / MaskGIT time)", None, None,
                     sec["AR + KV cache"] / sec[mg_name]))
    train = {name: train_tokens_per_s(m, device, train_batch, train_steps, amp)
             for name, m in (("MaskGIT", mg), ("AR", ar))}
    return rows, train


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", nargs="*", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-batch", type=int, default=None, help="default: 16 on CPU, 128 on CUDA")
    ap.add_argument("--train-steps", type=int, default=None, help="default: 5 on CPU, 50 on CUDA")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    args = ap.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"grid {GRID[0]}×{GRID[1]} (N={GRID[0] * GRID[1]}), K={K}, dim {DIM}, depth {DEPTH}, heads {HEADS}; "
          f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    print("| device | batch | sampler | sequential passes | GFLOPs / sample | wall time (s) |")
    print("|---|---|---|---|---|---|")
    for name in devices:
        device = torch.device(name)
        cuda = device.type == "cuda"
        tb = args.train_batch or (128 if cuda else 16)
        ts = args.train_steps or (50 if cuda else 5)
        rows, train = bench(device, args.batches, args.steps, args.repeats, tb, ts, args.amp and cuda)
        if cuda:
            name = f"cuda ({torch.cuda.get_device_name(device)})"
        for _dev, b, sampler, passes, flops, sec in rows:
            if passes is None:
                print(f"| {name} | {b} | **{sampler}** | | | **{sec:.1f}×** |")
            else:
                fl = f"{flops / 1e9:.2f}" if flops is not None else "same"
                print(f"| {name} | {b} | {sampler} | {passes} | {fl} | {sec:.4f} |")
        print(f"| {name} | {tb} | training tokens/s: MaskGIT {train['MaskGIT']:,.0f}, AR {train['AR']:,.0f} | | | |")


if __name__ == "__main__":
    main()
