"""``python -m minimovq train``: train a VQ-VAE, VQGAN or MoVQ tokenizer, in one process or under torchrun.

    python -m minimovq train --model movq --config tiny --data shapes --steps 2000 --out runs/movq
    torchrun --nproc_per_node=8 -m minimovq train --model movq --config 67M --data folder:/data/ffhq \\
        --image-size 256 --batch-size 64 --steps 400000 --out runs/movq-67M

Per step: the generator (autoencoder) loss — MSE + VQ loss for the VQ-VAE; L1/L2 + LPIPS + VQ loss (+ the GAN
term from ``--gan-start`` on) for VQGAN/MoVQ — then the PatchGAN's hinge loss. The tokenizer is wrapped in DDP;
the discriminator's gradients are averaged by hand and its BatchNorm uses global-batch statistics. Writes
``DIR/last.pt`` (the tokenizer's state dict under "model"), ``DIR/metrics.jsonl`` and ``DIR/samples/*.png``.
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
from ..losses import VQGANLoss
from .configs import DEFAULTS, MODELS, build_tokenizer, check_model_options, model_record
from .loop import (MetricsLog, UsageError, batches, check_batch, global_means, resume_state, rng_state, save_state,
                   set_rng_state, start)
from .common import add_runtime_options, load_images, progress, save_grid, workers

# options a resumed run must share with the run that wrote DIR/last.pt (--steps may grow, the world size change)
SAME_RUN = ("model", "config", "quantizer", "groups", "data", "num_images", "image_size", "batch_size", "accum", "seed",
            "dead_code", "loss")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="movq", help=f"one of {', '.join(MODELS)} (default movq)")
    p.add_argument("--config", default=None, help="a named config (see minimovq.cli.configs); default: small")
    p.add_argument("--quantizer", default=None, help="vq or ema (default: ema for vqvae, vq otherwise)")
    p.add_argument("--groups", type=int, default=1, help="codes per position (MoVQ multichannel quantization)")
    p.add_argument("--dead-code", type=int, default=0, help="restart codes unused for this many steps (0: off)")
    p.add_argument("--data", default="shapes", help="anything minimovq.data.load takes, e.g. folder:<path>")
    p.add_argument("--num-images", type=int, default=None, help="training images (default: the whole split)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32, help="the GLOBAL batch, split across processes")
    p.add_argument("--accum", type=int, default=1, help="gradient-accumulation micro-batches per step")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=None, help="default 2e-4 (vqvae), 1e-4 (vqgan, movq)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gan-start", type=int, default=None,
                   help="first step with the GAN (default: half of --steps); >= --steps means no GAN")
    p.add_argument("--loss", default=None, help="GAN recipe: taming (L1, adaptive weight, 3-layer D from 48 px) "
                   "or sber (L2, weight 0.1, 2-layer D); default taming for vqgan, sber for movq")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm (0: off)")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--sample-every", type=int, default=None, help="sample grids (default: --ckpt-every)")
    p.add_argument("--out", default=None, help="the run folder (default runs/<model>-<config>)")
    add_runtime_options(p)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill per-model defaults and reject bad options with a message that says the fix."""
    try:
        check_model_options(args.model)
        d = DEFAULTS[args.model]
        args.config, args.quantizer = args.config or d["config"], args.quantizer or d["quantizer"]
        check_model_options(args.model, args.config, args.quantizer, args.groups)
    except ValueError as e:
        raise UsageError(str(e)) from e
    args.lr = args.lr if args.lr is not None else d["lr"]
    if args.model == "vqvae":
        if args.gan_start is not None and args.gan_start < args.steps:
            raise UsageError("--gan-start applies to vqgan and movq; the VQ-VAE trains without a GAN (drop it)")
        args.loss, args.gan_start = None, args.steps
    else:
        args.loss = args.loss or d["loss"]
        if args.loss not in ("taming", "sber"):
            raise UsageError(f"unknown --loss {args.loss!r}; choose taming or sber")
        args.gan_start = args.steps // 2 if args.gan_start is None else args.gan_start
    if args.steps < 1 or args.ckpt_every < 1 or args.log_every < 1:
        raise UsageError("--steps, --ckpt-every and --log-every must be >= 1")
    args.sample_every = args.sample_every or args.ckpt_every
    args.out = args.out or f"runs/{args.model}-{args.config}"
    return args


def make_loss(args) -> VQGANLoss | None:
    """The VQGAN objective; the discriminator's BatchNorm reduces over ranks (GlobalBatchNorm2d)."""
    if args.model == "vqvae":
        return None
    layers = 3 if args.loss == "taming" and args.image_size >= 48 else 2  # a 3-layer PatchGAN needs 24+ px
    if args.loss == "sber":
        loss = VQGANLoss.sber_movqgan(disc_start=args.gan_start, disc_num_layers=layers)
    else:
        loss = VQGANLoss(disc_start=args.gan_start, disc_weight=0.8, disc_num_layers=layers)
    dist.sync_batchnorm(loss.discriminator)
    return loss


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's λ = ‖∇_L nll‖ / (‖∇_L g‖ + 1e-4), clamped to [0, 1e4], from the *global* batch's gradients (the
    mean over ranks of the local ones), so every rank — and one process — uses the same λ."""
    g_nll, g_g = (torch.autograd.grad(loss, last_layer, retain_graph=True)[0] for loss in (nll, g_loss))
    g_nll, g_g = (dist.all_reduce_sum(g.float()) / dist.world_size() for g in (g_nll, g_g))
    return torch.clamp(g_nll.norm() / (g_g.norm() + 1e-4), 0.0, 1e4).detach()


def generator_loss(args, loss_fn, net, x, x_hat, vq_loss, step):
    """The autoencoder's loss and its logs (scalars)."""
    if loss_fn is None:  # VQ-VAE: ‖x − x̂‖² + VQ loss
        rec = F.mse_loss(x_hat.float(), x.float())
        return rec + vq_loss, {"rec": rec.detach(), "vq": vq_loss.detach()}
    nll, pixel, p_loss = loss_fn.reconstruction_loss(x, x_hat)
    total = nll + loss_fn.codebook_weight * vq_loss
    logs = {"nll": nll.detach(), "pixel": pixel.detach(), "lpips": p_loss.detach(), "vq": vq_loss.detach()}
    g_factor, _ = loss_fn.gan_factors(step)
    if g_factor > 0:
        g_loss = -loss_fn.discriminator(x_hat.float().contiguous()).float().mean()
        lam = (adaptive_weight(nll, g_loss, net.last_layer) * loss_fn.disc_weight if loss_fn.use_adaptive_weight
               else torch.tensor(loss_fn.disc_weight, device=x.device))
        total = total + lam * g_factor * g_loss
        logs.update(g_loss=g_loss.detach(), d_weight=lam)
    return total, logs


def run(args: argparse.Namespace) -> None:
    args = resolve(args)
    rt = start(args.device, args.amp, args.channels_last, args.seed)
    out = Path(args.out)
    dataset = load_images(args.data, "train", args.image_size, args.num_images)
    check_batch(args.batch_size, rt.world, args.accum, len(dataset))
    state = resume_state(out, vars(args), SAME_RUN)  # every option checked: now the work starts

    net = build_tokenizer(args.model, args.config, args.quantizer, args.groups, args.dead_code).to(rt.device)
    loss_fn = make_loss(args)
    if loss_fn is not None:
        loss_fn.to(rt.device)
    if rt.channels_last:
        net.to(memory_format=torch.channels_last)
    betas = (0.9, 0.999) if args.model == "vqvae" else (0.5, 0.9)
    opt_g = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=args.lr, betas=betas)
    opt_d = (torch.optim.Adam(loss_fn.discriminator.parameters(), lr=args.lr, betas=betas)
             if loss_fn is not None else None)
    step = 0
    if state is not None:
        net.load_state_dict(state["model"])
        opt_g.load_state_dict(state["optimizers"]["g"])
        if opt_d is not None:
            loss_fn.discriminator.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["optimizers"]["d"])
        rt.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], rt.device)
        step = int(state["step"])
    model = torch.compile(net) if args.compile else net  # compile first, then wrap (as nanoGPT does)
    # EMA buffers are kept equal by the quantizer's own all-reduces: no need to broadcast them every step
    model = DDP(model, **_no_buffer_sync()) if dist.is_distributed() else model

    log = MetricsLog(out / "metrics.jsonl", step)
    fixed = torch.stack([dataset[i] for i in range(min(8, len(dataset)))])  # reconstructed in the sample grids
    loader = iter(batches(dataset, rt, args.batch_size, args.steps, step, args.seed, args.accum,
                          workers(args.workers)))
    bar = progress(args.steps, step, f"train {args.model}", rt.main)
    t0, seen = time.perf_counter(), 0
    while step < args.steps:
        logs = {}
        gan_on = loss_fn is not None and loss_fn.gan_factors(step)[1] > 0
        for a in range(args.accum):
            x = rt.to_device(next(loader))
            last = a == args.accum - 1
            with (model.no_sync() if isinstance(model, DDP) and not last else contextlib.nullcontext()):
                if loss_fn is not None:
                    loss_fn.discriminator.requires_grad_(False)  # the generator's loss leaves D's grads alone
                with rt.autocast():  # the losses compute their sums in fp32 themselves
                    x_hat, vq_loss, _ = model(x)
                    loss_g, logs = generator_loss(args, loss_fn, net, x, x_hat, vq_loss, step)
                rt.scaler.scale(loss_g / args.accum).backward()
            if gan_on:
                loss_fn.discriminator.requires_grad_(True)
                with rt.autocast():
                    loss_d, d_logs = loss_fn.discriminator_loss(x, x_hat.detach(), step)
                rt.scaler.scale(loss_d / args.accum).backward()
                logs.update(disc_loss=d_logs["disc_loss"], logits_real=d_logs["logits_real"])
            seen += x.shape[0] * rt.world
        optimizer_step(rt, opt_g, net.parameters(), args.grad_clip)
        if gan_on:
            dist.average_gradients(loss_fn.discriminator.parameters())
            optimizer_step(rt, opt_d, loss_fn.discriminator.parameters(), args.grad_clip)
        rt.scaler.update()
        step += 1
        if step % args.log_every == 0 or step == args.steps:
            means = global_means(logs, rt.device)
            seconds = time.perf_counter() - t0
            log.write({"step": step, **means, "lr": args.lr, "images_per_s": seen / seconds, "seconds": seconds})
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items() if k in ("rec", "nll", "disc_loss")})
        if rt.main and (step % args.sample_every == 0 or step == args.steps):
            with torch.no_grad():
                net.eval()
                x_hat = net(rt.to_device(fixed)).x_hat.float().cpu()
                net.train()
            save_grid(torch.cat([fixed, x_hat]), out / "samples" / f"step_{step:07d}.png", nrow=len(fixed))
        if step % args.ckpt_every == 0 or step == args.steps:
            save_state(out / "last.pt", {
                "model": net.state_dict(), **model_record(net, vars(args)), "step": step,
                "optimizers": {"g": opt_g.state_dict(), **({"d": opt_d.state_dict()} if opt_d else {})},
                "discriminator": loss_fn.discriminator.state_dict() if loss_fn is not None else {},
                "scaler": rt.scaler.state_dict(), "rng": rng_state(rt.device), "world_size": rt.world})
        bar.update(1)
    bar.close()
    dist.cleanup()


def optimizer_step(rt, opt: torch.optim.Optimizer, params, clip: float) -> None:
    """Unscale (fp16), clip the gradient norm, step through the GradScaler, zero the gradients."""
    rt.scaler.unscale_(opt)
    if clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip)
    rt.scaler.step(opt)
    opt.zero_grad(set_to_none=True)


def _no_buffer_sync() -> dict:
    """DDP's option that stops it from broadcasting rank 0's buffers at every forward (renamed in torch 2.10+)."""
    import inspect

    params = inspect.signature(DDP.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
