"""``python -m minimovq train-prior``: a MaskGIT (or autoregressive) prior over a token file, under torchrun too.

    python -m minimovq tokenize --ckpt runs/movq/last.pt --data shapes-single --labels --out runs/tokens.pt
    python -m minimovq train-prior --tokens runs/tokens.pt --class-cond --steps 5000 --out runs/prior

The loss is ``maskgit.prior_loss``'s — cross-entropy with label smoothing on the masked positions (MaskGIT) or
on every next token (``--arch ar``) — written so that N processes compute one process's number: the masks and
the label dropout are drawn for the whole global micro-batch from a generator seeded by (seed, step), and the
summed cross-entropy is divided by the global count of scored tokens.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import distributed as dist
from ..checkpoint import load_checkpoint
from ..maskgit import MaskGIT, drop_labels, mask_tokens
from ..transformer import make_optimizer
from .common import add_runtime_options, progress
from .loop import (GlobalBatchSampler, MetricsLog, UsageError, check_batch, global_means, resume_state, rng_state,
                   save_state, set_rng_state, start)

SAME_RUN = ("tokens", "arch", "dim", "depth", "heads", "class_cond", "label_drop", "batch_size", "accum", "seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", required=True, help="a token file written by `python -m minimovq tokenize`")
    p.add_argument("--arch", default="maskgit", help="maskgit (bidirectional, masked) or ar (raster-order)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--class-cond", action="store_true", help="condition on the token file's labels")
    p.add_argument("--label-drop", type=float, default=0.1, help="label dropout, for classifier-free guidance")
    p.add_argument("--batch-size", type=int, default=64, help="the GLOBAL batch")
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", default="runs/prior")
    add_runtime_options(p)


def read_tokens(path: str) -> dict:
    """A token file, with a clear error when it is missing or is not one."""
    if not Path(path).is_file():
        raise UsageError(f"--tokens {path}: no such file; write one with `python -m minimovq tokenize`")
    data = load_checkpoint(path)
    if not isinstance(data.get("tokens"), torch.Tensor):
        raise UsageError(f"--tokens {path} is not a token file (no 'tokens'); write one with "
                         "`python -m minimovq tokenize`")
    return data


def build_prior(kwargs: dict) -> MaskGIT:
    return MaskGIT(**kwargs)


def micro_batch(tokens, labels, idx, model_cfg, args, step, a, rt):
    """This rank's inputs, targets and scored-token mask for micro-batch ``a`` of ``step``, and the global
    number of scored tokens. Randomness is drawn for the whole global micro-batch, then sliced."""
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step * 64 + a)
    x = tokens[idx]  # (B_m, N, G) global micro-batch, CPU
    y = labels[idx] if labels is not None else None
    if y is not None and args.label_drop > 0:
        y = drop_labels(y, args.label_drop, model_cfg["num_classes"], gen)
    if args.arch == "ar":
        inp, scored = x, torch.ones(x.shape[:2], dtype=torch.bool)
    else:
        inp, scored = mask_tokens(x, model_cfg["n_embed"], gen)  # mask_id = n_embed
    count = int(scored.sum()) * x.shape[-1]
    part = x.shape[0] // rt.world
    sl = slice(rt.rank * part, (rt.rank + 1) * part)
    mine = [t[sl].to(rt.device) if t is not None else None for t in (inp, x, scored, y)]
    return (*mine, count)


def run(args: argparse.Namespace) -> None:
    if args.arch not in ("maskgit", "ar"):
        raise UsageError(f"unknown --arch {args.arch!r}; choose maskgit or ar")
    rt = start(args.device, args.amp, False, args.seed)
    data = read_tokens(args.tokens)
    tokens = data["tokens"].long()
    N_img, h, w = tokens.shape[:3]
    G = tokens.shape[3] if tokens.ndim == 4 else 1
    tokens = tokens.reshape(N_img, h * w, G)  # (N_img, N, G), raster order
    labels = data.get("labels") if args.class_cond else None
    if args.class_cond and labels is None:
        raise UsageError(f"--class-cond needs labels in {args.tokens}; tokenize with --labels")
    check_batch(args.batch_size, rt.world, args.accum, N_img)
    cfg = dict(n_embed=int(data["n_embed"]), grid_size=(h, w), dim=args.dim, depth=args.depth, heads=args.heads,
               groups=G, num_classes=int(labels.max()) + 1 if labels is not None else None,
               causal=args.arch == "ar")
    out = Path(args.out)
    state = resume_state(out, vars(args), SAME_RUN)
    try:
        net = build_prior(cfg).to(rt.device)
    except ValueError as e:
        raise UsageError(str(e)) from e
    opt, sched = make_optimizer(net, lr=args.lr, warmup=args.warmup, total_steps=args.steps)
    step = 0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizers"]["prior"])
        sched.load_state_dict(state["schedulers"]["prior"])
        rt.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], rt.device)
        step = int(state["step"])
    model = torch.compile(net) if args.compile else net
    model = DDP(model) if dist.is_distributed() else model

    log = MetricsLog(out / "metrics.jsonl", step)
    sampler = GlobalBatchSampler(N_img, args.batch_size, args.steps, seed=args.seed, accum=1)
    micro = args.batch_size // args.accum
    bar = progress(args.steps, step, f"train-prior {args.arch}", rt.main)
    t0, seen = time.perf_counter(), 0
    while step < args.steps:
        batch = sampler.global_batch(step)
        for a in range(args.accum):
            inp, x, scored, y, count = micro_batch(tokens, labels, batch[a * micro:(a + 1) * micro], cfg, args,
                                                   step, a, rt)
            last = a == args.accum - 1
            with (model.no_sync() if isinstance(model, DDP) and not last else contextlib.nullcontext()):
                with rt.autocast():
                    logits = model(inp, y)[scored].float()  # (M, G, K) at the scored positions
                target = x[scored]                           # (M, G)
                # L = Σ_scored CE(logits, target) / (global count); × W because DDP averages over ranks
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     label_smoothing=0.1, reduction="sum")
                loss = ce / count * rt.world / args.accum
                rt.scaler.scale(loss).backward()
            seen += x.shape[0] * rt.world
        rt.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        rt.scaler.step(opt)
        rt.scaler.update()
        opt.zero_grad(set_to_none=True)
        sched.step()
        step += 1
        if step % args.log_every == 0 or step == args.steps:
            acc = (logits.argmax(-1) == target).float().mean()
            # the mean over ranks of W·(a rank's share) is the global micro-batch's loss
            means = global_means({"loss": loss.detach() * args.accum, "acc": acc}, rt.device)
            log.write({"step": step, **means, "lr": sched.get_last_lr()[0],
                       "images_per_s": seen / (time.perf_counter() - t0)})
            bar.set_postfix(loss=f"{means['loss']:.4f}")
        if step % args.ckpt_every == 0 or step == args.steps:
            save_state(out / "last.pt", {
                "model": net.state_dict(), "prior": cfg, "tokenizer": data.get("tokenizer"), "args": vars(args),
                "step": step, "optimizers": {"prior": opt.state_dict()}, "schedulers": {"prior": sched.state_dict()},
                "scaler": rt.scaler.state_dict(), "rng": rng_state(rt.device), "world_size": rt.world})
        bar.update(1)
    bar.close()
    dist.cleanup()
