"""minimovq's MoVQ against the official SBER-MoVQGAN code: forward+backward time and extra peak memory with the
same weights, and the largest difference between their outputs.

The official code is not a dependency of minimovq (and has no licence, so none of it is copied here). Point this
script at a local checkout of it:

    git clone https://github.com/ai-forever/MoVQGAN /path/to/MoVQGAN
    python benchmarks/bench_official.py --official /path/to/MoVQGAN          # or:
    MINIMOVQ_OFFICIAL_MOVQGAN=/path/to/MoVQGAN python benchmarks/bench_official.py

    python benchmarks/bench_official.py --official ... --repeats 5           # more processes per side
    python benchmarks/bench_official.py --official ... --weights movqgan_67M.ckpt   # released weights
    python benchmarks/bench_official.py --official ... --device cuda         # GPU: fp32, then AMP + channels_last

Only three files of the checkout are read, by path, so neither its package ``__init__`` (which needs
``huggingface_hub``) nor its Lightning training code (``pytorch_lightning``) has to import:
``movqgan/modules/vqvae/movq_modules.py`` (SpatialNorm, MOVQDecoder), and ``vqvae_blocks.py`` (Encoder) and
``quantize.py`` (VectorQuantizer2) from the same folder (or from ``taming/modules/vqvae/`` in older checkouts).
They are assembled exactly as ``movqgan.models.vqgan.MOVQ`` does: ``encoder -> quant_conv -> quantize ->
post_quant_conv -> MOVQDecoder(quant2, quant)``, with the same attribute names, so the official model and
minimovq's ``MoVQ`` load one state dict with ``strict=True``.

What is measured (defaults: SBER-MoVQGAN 67M, batch 1, 128 px, fp32, 2 threads):
* One pass is ``x_hat, vq_loss = model(x)[:2]; (mse(x_hat, x) + vq_loss).backward()``, both models in train
  mode, minimovq's quantizer with ``legacy=True`` (the official loss), the same random weights (seed 0, or
  ``--weights``) and the same input.
* Every measurement runs in a fresh subprocess, alternating official, minimovq, official, ... ``--repeats``
  times each. A process does one warm-up pass and ``--iters`` timed passes and reports their median; the table
  gives the median over processes and the spread (min-max).
* Extra peak memory, CPU: the resident-set high-water mark after the passes (``ru_maxrss``) minus the resident
  set just before the timed passes (after the warm-up), as in ``bench_vqgan.py``: activations, gradients and
  allocator overhead on top of the weights. CUDA: ``max_memory_allocated`` during the passes minus what was
  allocated before them.
* On a machine shared with other jobs, wall time swings from pass to pass: compare medians, read the spread and
  the CPU time per pass too, and set ``OMP_WAIT_POLICY=PASSIVE`` so that waiting OpenMP threads do not spin.
* Equality: one more process runs both models on the same input and reports the largest absolute difference of
  the outputs (and of the VQ loss and the gradients of the weights) and whether the code indices agree.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from minimovq.movq import CONFIGS, MoVQ  # noqa: E402

ENV = "MINIMOVQ_OFFICIAL_MOVQGAN"
# where the three files live in a checkout: the current layout first, then the older taming/ one
LAYOUTS = (("movqgan/modules/vqvae/movq_modules.py", "movqgan/modules/vqvae/vqvae_blocks.py",
            "movqgan/modules/vqvae/quantize.py"),
           ("movqgan/modules/vqvae/movq_modules.py", "taming/modules/vqvae/vqvae_blocks.py",
            "taming/modules/vqvae/quantize.py"))


def official_files(root: str | None) -> tuple[str, str, str]:
    """The paths of movq_modules.py, vqvae_blocks.py and quantize.py in a checkout, or SystemExit saying why."""
    how = ("git clone https://github.com/ai-forever/MoVQGAN /path/to/MoVQGAN, then pass --official "
           f"/path/to/MoVQGAN or set {ENV}=/path/to/MoVQGAN")
    if not root:
        raise SystemExit(f"bench_official: no path to the official SBER-MoVQGAN code. {how}")
    if not os.path.isdir(root):
        raise SystemExit(f"bench_official: {root!r} is not a directory. {how}")
    for layout in LAYOUTS:
        paths = tuple(os.path.join(root, p) for p in layout)
        if all(os.path.isfile(p) for p in paths):
            return paths
    raise SystemExit(f"bench_official: {root!r} does not look like a MoVQGAN checkout: expected "
                     f"{' + '.join(LAYOUTS[0])} (or the taming/ layout). {how}")


def _load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_official(root: str, config: dict) -> nn.Module:
    """SBER's MOVQ (movqgan.models.vqgan.MOVQ without the Lightning parts), from the files of a checkout."""
    movq_path, blocks_path, quantize_path = official_files(root)
    with contextlib.redirect_stdout(sys.stderr):  # MOVQDecoder prints the z shape
        movq_modules = _load_file("sber_movq_modules", movq_path)
        blocks = _load_file("sber_vqvae_blocks", blocks_path)
        quantize = _load_file("sber_quantize", quantize_path)

        class MOVQ(nn.Module):  # the modules and data flow of movqgan.models.vqgan.MOVQ
            def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int):
                super().__init__()
                self.encoder = blocks.Encoder(**ddconfig)
                self.decoder = movq_modules.MOVQDecoder(zq_ch=embed_dim, **ddconfig)
                self.quantize = quantize.VectorQuantizer2(n_embed, embed_dim, beta=0.25)
                self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
                self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

            def forward(self, x: torch.Tensor):
                quant, diff, info = self.quantize(self.quant_conv(self.encoder(x)))
                return self.decoder(self.post_quant_conv(quant), quant), diff, info[2]

        return MOVQ(**config)


def build(impl: str, args: dict) -> nn.Module:
    config = CONFIGS[args["config"]]
    model = build_official(args["official"], config) if impl == "official" else MoVQ(**config, legacy=True)
    model.load_state_dict(torch.load(args["state"], map_location="cpu", weights_only=True), strict=True)
    return model.train()


def random_weights(config: str, size: int) -> dict[str, torch.Tensor]:
    """PyTorch's default init (seed 0), except the codebook: taming's U(±1/K) puts every code within 1e-4 of 0,
    where the nearest code is decided by rounding and all of z_q is nearly 0. Drawing the codes from the
    distribution of the encoder's latents makes the nearest codes well separated and z_q meaningful."""
    torch.manual_seed(0)
    model = MoVQ(**CONFIGS[config], legacy=True)
    with torch.no_grad():
        z = model.quant_conv(model.encoder(torch.rand(2, 3, size, size) * 2 - 1)).transpose(0, 1).flatten(1)
        e = model.quantize.embedding.weight
        e.copy_(z.mean(1) + z.std(1) * torch.randn_like(e))  # (K, D)
    return model.state_dict()


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``), so that the resident set before the
    timed passes is what is live (weights, input), not what the allocator kept from the warm-up pass. Without
    it the baseline depends on how much each implementation's allocations happened to leave cached."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _autocast(dev: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    from minimovq.profiles import amp_dtype
    return torch.autocast(dev.type, dtype=amp_dtype(dev))


def measure(impl: str, args: dict) -> dict:
    """Time ``args["iters"]`` forward+backward passes of one model in this process (after one warm-up pass)."""
    torch.set_num_threads(args["threads"])
    dev = torch.device(args["device"])
    model = build(impl, args).to(dev)
    torch.manual_seed(1)
    x = (torch.rand(args["batch"], 3, args["size"], args["size"]) * 2 - 1).to(dev)
    if args["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    amp = args["amp"] and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp and _autocast(dev, amp).fast_dtype == torch.float16)

    def step():
        with _autocast(dev, amp):
            x_hat, vq_loss = model(x)[:2]
            loss = F.mse_loss(x_hat.float(), x) + vq_loss
        scaler.scale(loss).backward()
        model.zero_grad(set_to_none=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    step()  # warm-up: allocator, oneDNN/cuDNN kernel choice, lazy inits
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        release_free_memory()
        base = current_rss()
    times, cpu = [], []
    for _ in range(args["iters"]):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"sec": statistics.median(times), "cpu_sec": statistics.median(cpu), "peak_mib": max(peak, 0) / 2 ** 20}


def compare(args: dict) -> dict:
    """Run both models on one input (fp32) and return the largest differences."""
    torch.set_num_threads(args["threads"])
    dev = torch.device(args["device"])
    torch.manual_seed(1)
    x = (torch.rand(args["batch"], 3, args["size"], args["size"]) * 2 - 1).to(dev)
    outs = []
    for impl in ("official", "minimovq"):
        model = build(impl, args).to(dev)
        x_hat, vq_loss, idx = model(x)
        (F.mse_loss(x_hat, x) + vq_loss).backward()
        grads = {k: p.grad.detach().cpu() for k, p in model.named_parameters() if p.grad is not None}
        outs.append((x_hat.detach().cpu(), float(vq_loss), idx.flatten().cpu(), grads))
        del model
    (a, la, ia, ga), (b, lb, ib, gb) = outs
    grad_diff = max((ga[k] - gb[k]).abs().max().item() for k in ga)
    grad_scale = max(g.abs().max().item() for g in ga.values())
    return {"x_hat": (a - b).abs().max().item(), "vq_loss": abs(la - lb), "same_indices": bool(torch.equal(ia, ib)),
            "grad": grad_diff, "grad_rel": grad_diff / max(grad_scale, 1e-30), "same_grad_keys": ga.keys() == gb.keys()}


def run_child(mode: str, args: dict) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps([mode, args])],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench_official: the {mode} process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(xs: list[float]) -> str:
    return f"{min(xs):.3f}-{max(xs):.3f}" if len(xs) > 1 else "-"


def table(title: str, base: dict, amp: bool, channels_last: bool, repeats: int) -> dict:
    """Alternate official / minimovq processes ``repeats`` times; print one block of the table."""
    args = {**base, "amp": amp, "channels_last": channels_last}
    runs: dict[str, list[dict]] = {"official": [], "minimovq": []}
    for _ in range(repeats):
        for impl in runs:
            runs[impl].append(run_child(impl, args))
    sec = {k: [r["sec"] for r in v] for k, v in runs.items()}
    mib = {k: [r["peak_mib"] for r in v] for k, v in runs.items()}
    med = {k: (statistics.median(sec[k]), statistics.median(mib[k])) for k in runs}
    print(f"\n{title}\n  {'implementation':<12} {'s/pass (median)':>16} {'spread':>13} {'extra peak MiB':>15} "
          f"{'spread':>11}")
    for k in runs:
        print(f"  {k:<12} {med[k][0]:>16.3f} {spread(sec[k]):>13} {med[k][1]:>15.0f} "
              f"{'-' if len(mib[k]) < 2 else f'{min(mib[k]):.0f}-{max(mib[k]):.0f}':>11}")
    cpu = {k: statistics.median(r["cpu_sec"] for r in v) for k, v in runs.items()}
    print(f"  CPU time per pass (all threads; less sensitive to other load on the machine): official "
          f"{cpu['official']:.3f} s, minimovq {cpu['minimovq']:.3f} s, ratio {cpu['official'] / cpu['minimovq']:.2f}x")
    speed = med["official"][0] / med["minimovq"][0]
    memory = med["minimovq"][1] / max(med["official"][1], 1e-9)
    # the per-pair ratios show how much of the speed-up is noise
    pairs = [o / m for o, m in zip(sec["official"], sec["minimovq"], strict=True)]
    print(f"  speed: {speed:.2f}x the official (pairwise {spread(pairs)}); extra peak memory: {memory:.2f}x")
    return {"speed": speed, "memory": memory, "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", default=os.environ.get(ENV), help=f"path to a MoVQGAN checkout (or ${ENV})")
    p.add_argument("--config", default="67M", choices=("67M", "102M", "270M"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process (CPU)")
    p.add_argument("--iters", type=int, default=3, help="timed passes per process")
    p.add_argument("--repeats", type=int, default=3, help="processes per implementation, alternating")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--weights", default=None, help="a released checkpoint (e.g. movqgan_67M.ckpt) instead of "
                   "random weights")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        mode, args = json.loads(a.child)
        print(json.dumps(compare(args) if mode == "compare" else measure(mode, args)))
        return
    official_files(a.official)  # fail early, and clearly, without a checkout

    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.pt")
        if a.weights:
            from minimovq.vqgan import read_state_dict
            sd = read_state_dict(a.weights)
        else:
            sd = random_weights(a.config, a.size)
        torch.save(sd, state)
        del sd
        base = dict(official=os.path.abspath(a.official), config=a.config, size=a.size, batch=a.batch,
                    threads=a.threads, iters=a.iters, device=a.device, state=state, amp=False, channels_last=False)
        where = (torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {a.threads} threads")
        print(f"SBER-MoVQGAN {a.config} vs minimovq MoVQ, forward+backward, batch {a.batch}, {a.size} px, "
              f"{where}, torch {torch.__version__}; {a.repeats} processes x {a.iters} passes each")
        eq = run_child("compare", base)
        ok = eq["x_hat"] <= 1e-4 and eq["same_indices"]
        print(f"same weights, same input (fp32): max |x_hat diff| = {eq['x_hat']:.2e}, |vq_loss diff| = "
              f"{eq['vq_loss']:.2e}, same indices: {eq['same_indices']}, max |grad diff| = {eq['grad']:.2e} "
              f"({eq['grad_rel']:.1e} of the largest gradient) -> {'equal within 1e-4' if ok else 'NOT EQUAL'}")
        results = {"fp32": table("fp32", base, False, False, a.repeats)}
        if a.device == "cuda":
            results["amp"] = table("AMP + channels_last (both implementations)", base, True, True, a.repeats)
            off32 = statistics.median(r["sec"] for r in results["fp32"]["runs"]["official"])
            ours = statistics.median(r["sec"] for r in results["amp"]["runs"]["minimovq"])
            print(f"  minimovq AMP + channels_last against the official code in fp32 (its released precision): "
                  f"{off32 / ours:.2f}x")
        print("\nsummary: " + "; ".join(f"{k}: {r['speed']:.2f}x speed, {r['memory']:.2f}x extra peak memory"
                                      for k, r in results.items()))
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
