"""Forward+backward throughput and peak memory of VQGAN (vqgan_imagenet_f16_1024, 72M params) at 256 px, and of
``F.scaled_dot_product_attention`` against an explicit softmax attention.

    OMP_NUM_THREADS=1 python benchmarks/bench_vqgan.py            # CPU: batch 1, 2 timed passes (slow: minutes)
    python benchmarks/bench_vqgan.py --device cuda --batch 8      # GPU: fp32, then AMP + channels_last

One pass = ``x_hat, vq_loss, _ = model(x); (mse(x_hat, x) + vq_loss).backward()`` on random images in [-1, 1].
Throughput is batch / median time of ``--iters`` passes after one warm-up pass.

How memory is measured:
* CPU: every configuration runs in a fresh subprocess. Peak = the process's resident-set high-water mark after
  the passes (``ru_maxrss``) minus its resident set just before them (``/proc/self/statm``): the extra memory the
  step needed (activations, gradients, allocator overhead), on top of the model's weights.
* CUDA: ``torch.cuda.max_memory_allocated`` during the passes, minus what was allocated before them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minimovq.blocks import AttnBlock  # noqa: E402


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(spec: dict) -> torch.nn.Module:
    """spec: {"model": "vqgan" | "movq" | "attn", "config": name (or "kwargs": constructor arguments),
    "overrides": {...}, "manual": bool, "channels": C (attn only)}."""
    if spec["model"] == "attn":
        model = AttnBlock(spec["channels"])
    else:
        from minimovq import movq, vqgan
        cls = vqgan.VQGAN if spec["model"] == "vqgan" else movq.MoVQ
        if "kwargs" in spec:
            model = cls(**spec["kwargs"])
        else:
            model = cls.from_config(spec["config"], **spec.get("overrides", {}))
    for m in model.modules():
        if isinstance(m, AttnBlock):
            m.manual = bool(spec.get("manual", False))
    return model


def measure(spec: dict, size: int, batch: int, iters: int, device: str, amp: bool = False,
            channels_last: bool = False) -> dict:
    """Time fwd+bwd passes of one configuration in this process; returns images/s and peak memory in MiB."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build(spec).to(dev)
    channels = spec["channels"] if spec["model"] == "attn" else 3
    x = torch.rand(batch, channels, size, size, device=dev) * 2 - 1
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = None
    if amp and dev.type == "cuda":
        from minimovq.profiles import amp_dtype
        dtype = amp_dtype(dev)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step():
        ctx = torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            if spec["model"] == "attn":
                loss = model(x).float().square().mean()
            else:
                x_hat, vq_loss, _ = model(x)
                loss = F.mse_loss(x_hat.float(), x) + vq_loss
        scaler.scale(loss).backward()
        model.zero_grad(set_to_none=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    step()  # warm-up: allocator, cuDNN autotuning, lazy inits
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = current_rss()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    sec = statistics.median(times)
    return {"images_per_s": batch / sec, "sec_per_pass": sec, "peak_mib": max(peak, 0) / 2 ** 20,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def measure_isolated(spec: dict, size: int, batch: int, iters: int, device: str, amp: bool = False,
                     channels_last: bool = False) -> dict:
    """``measure`` in a fresh subprocess on the CPU (so the RSS high-water mark belongs to this configuration)."""
    if device != "cpu":
        return measure(spec, size, batch, iters, device, amp, channels_last)
    args = json.dumps(dict(spec=spec, size=size, batch=batch, iters=iters, device=device, amp=amp,
                           channels_last=channels_last))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Table:
    """Prints a results table row by row (flushed, so long CPU runs show progress)."""

    def __init__(self, title: str):
        print(f"\n{title}\n  {'configuration':<52} {'params':>8} {'s/pass':>8} {'images/s':>9} {'peak MiB':>9}",
              flush=True)

    def row(self, name: str, r: dict) -> dict:
        print(f"  {name:<52} {r['params_m']:>7.2f}M {r['sec_per_pass']:>8.3f} {r['images_per_s']:>9.2f} "
              f"{r['peak_mib']:>9.0f}", flush=True)
        return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=None, help="default: 1 on the CPU, 8 on a GPU")
    p.add_argument("--iters", type=int, default=None, help="timed passes; default: 2 on the CPU, 10 on a GPU")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(**json.loads(a.child))))
        return
    cpu = a.device == "cpu"
    batch, iters = a.batch or (1 if cpu else 8), a.iters or (2 if cpu else 10)
    print(f"device={a.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"size={a.size} batch={batch} iters={iters}")
    spec = {"model": "vqgan", "config": "vqgan_imagenet_f16_1024"}
    t = Table(f"VQGAN vqgan_imagenet_f16_1024, forward+backward at {a.size} px, batch {batch}")
    t.row("f16_1024 fp32, SDPA attention", measure_isolated(spec, a.size, batch, iters, a.device))
    t.row("f16_1024 fp32, manual softmax attention",
          measure_isolated({**spec, "manual": True}, a.size, batch, iters, a.device))
    if not cpu:
        t.row("f16_1024 AMP + channels_last, SDPA",
              measure_isolated(spec, a.size, batch, iters, a.device, amp=True, channels_last=True))
        t.row("f16_1024 AMP + channels_last, manual attention",
              measure_isolated({**spec, "manual": True}, a.size, batch, iters, a.device, amp=True,
                               channels_last=True))

    # The attention block alone, where the token count makes the difference visible (f16 at 256 px has only
    # 16x16 = 256 tokens; MoVQ 67M attends over 32x32 = 1024 tokens at 512 channels).
    t = Table(f"Single-head AttnBlock alone, forward+backward, batch {batch}" + ("" if cpu else " (AMP)"))
    for grid, ch in ((16, 512), (32, 512), (64, 128)):
        for manual in (False, True):
            r = measure_isolated({"model": "attn", "channels": ch, "manual": manual}, grid, batch,
                                 max(iters, 3), a.device, amp=not cpu, channels_last=False)
            t.row(f"C={ch}, {grid}x{grid} = {grid * grid} tokens, {'manual softmax' if manual else 'SDPA'}", r)

if __name__ == "__main__":
    main()
