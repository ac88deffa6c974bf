"""``python -m minimovq tokenize | sample | eval``: the rest of the pipeline around a trained tokenizer.

    python -m minimovq tokenize --ckpt runs/movq/last.pt --data shapes --out runs/tokens.pt   # sharded by torchrun
    python -m minimovq sample --prior runs/prior/last.pt --n 16 --out samples.png
    python -m minimovq eval --ckpt runs/movq/last.pt --data shapes --split test

``eval`` reports PSNR, SSIM and LPIPS over the split, and rFID through torch-fidelity or clean-fid when one is
installed and its Inception weights can be had; otherwise it says why not (``rfid_skipped``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from .. import distributed as dist
from ..checkpoint import load_checkpoint, save_checkpoint
from ..metrics import evaluate_reconstruction
from ..sampling import sample as maskgit_sample
from ..sampling import sample_autoregressive
from ..tokens import tokenize_dataset
from .common import load_images, save_grid, workers
from .configs import load_tokenizer
from .loop import UsageError, start


def _tokenizer(path: str, device: torch.device):
    if not Path(path).is_file():
        raise UsageError(f"--ckpt {path}: no such file; train one with `python -m minimovq train --out DIR` "
                         "and pass DIR/last.pt")
    try:
        net, state = load_tokenizer(path)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return net.to(device), state


def _common(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument("--ckpt", required=True, help="the tokenizer: DIR/last.pt of a train run")
    p.add_argument("--data", default=None, help="a data.load name (default: the one it was trained on)")
    p.add_argument("--split", default=split)
    p.add_argument("--image-size", type=int, default=None, help="default: the training image size")
    p.add_argument("--num-images", type=int, default=None, help="number of images (default: the whole split)")
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None)


def add_tokenize_arguments(p: argparse.ArgumentParser) -> None:
    _common(p, "train")
    p.add_argument("--labels", action="store_true", help="store the dataset's labels (for --class-cond)")
    p.add_argument("--out", required=True, help="the token file to write")


def tokenize(args: argparse.Namespace) -> None:
    """Each rank encodes a contiguous shard; the shards are gathered in rank order, so the file is the same for
    any number of processes. Rank 0 writes it."""
    rt = start(args.device, "off")
    net, state = _tokenizer(args.ckpt, rt.device)
    trained = state.get("args", {})
    ds = load_images(args.data or trained.get("data", "shapes"), args.split,
                     args.image_size or trained.get("image_size", 32), args.num_images, labels=args.labels)
    if len(ds) < rt.world:
        raise UsageError(f"{len(ds)} images cannot be shared by {rt.world} processes; use fewer processes")
    lo, hi = rt.rank * len(ds) // rt.world, (rt.rank + 1) * len(ds) // rt.world
    loader = DataLoader(Subset(ds, range(lo, hi)), batch_size=args.batch_size, shuffle=False,
                        num_workers=workers(args.workers))
    td = tokenize_dataset(net, loader, device=rt.device, progress=rt.main)
    tokens = dist.all_gather_rows(td.tokens.to(rt.device)).cpu()
    labels = dist.all_gather_rows(td.labels.to(rt.device)).cpu() if td.labels is not None else None
    if rt.main:
        save_checkpoint({"tokens": tokens, "labels": labels, "n_embed": int(net.n_embed),
                         "tokenizer": str(Path(args.ckpt).resolve()), "data": args.data or trained.get("data"),
                         "split": args.split}, args.out)
        print(f"wrote {args.out}: tokens {tuple(tokens.shape)}"
              + (f", labels for {int(labels.max()) + 1} classes" if labels is not None else ""))
    dist.cleanup()


def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", required=True, help="DIR/last.pt of a train-prior run")
    p.add_argument("--tokenizer", default=None, help="default: the tokenizer recorded in the token file")
    p.add_argument("--num-samples", type=int, default=16, help="images in the grid")
    p.add_argument("--steps", type=int, default=8, help="MaskGIT decoding steps")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of an autoregressive prior")
    p.add_argument("--choice-temperature", type=float, default=4.5,
                   help="MaskGIT: scale of the Gumbel noise on the confidence (the official code's 4.5)")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale")
    p.add_argument("--label", type=int, default=None, help="the class (class-conditional priors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="samples.png")


def sample(args: argparse.Namespace) -> None:
    """Draw ``--n`` token grids from the prior, decode them, write one PNG (rank 0 only)."""
    from .prior import build_prior

    rt = start(args.device, "off", seed=args.seed)
    if rt.main:
        if not Path(args.prior).is_file():
            raise UsageError(f"--prior {args.prior}: no such file; train one with `python -m minimovq train-prior`")
        state = load_checkpoint(args.prior)
        prior = build_prior(state["prior"]).to(rt.device).eval()
        prior.load_state_dict(state["model"])
        net, _ = _tokenizer(args.tokenizer or state.get("tokenizer") or "", rt.device)
        gen = torch.Generator(rt.device).manual_seed(args.seed)
        labels = args.label if prior.num_classes is not None else None
        if prior.causal:
            tokens = sample_autoregressive(prior, args.num_samples, temperature=args.temperature, labels=labels,
                                           generator=gen, guidance=args.guidance)
        else:
            tokens = maskgit_sample(prior, args.num_samples, steps=args.steps, choice_temperature=args.choice_temperature,
                                    labels=labels, generator=gen, guidance=args.guidance)
        with torch.no_grad():
            images = net.decode_indices(tokens)
        print(f"wrote {save_grid(images, args.out, nrow=int(args.num_samples ** 0.5) or 1)}")
    dist.cleanup()


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    _common(p, "test")
    p.add_argument("--fid", action=argparse.BooleanOptionalAction, default=True, help="try rFID")
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")


def evaluate(args: argparse.Namespace) -> None:
    """Reconstruction metrics over a split, printed as JSON (rank 0 only: one GPU evaluates a split quickly)."""
    from ..lpips import LPIPS

    rt = start(args.device, "off")
    if rt.main:
        net, state = _tokenizer(args.ckpt, rt.device)
        trained = state.get("args", {})
        ds = load_images(args.data or trained.get("data", "shapes"), args.split,
                         args.image_size or trained.get("image_size", 32), args.num_images)
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=workers(args.workers))
        lpips = LPIPS().to(rt.device)
        with torch.no_grad():
            report = evaluate_reconstruction(lambda x: net(x).x_hat, loader, device=rt.device, lpips=lpips)
        report["lpips_trunk"] = "imagenet" if lpips.pretrained_trunk else "random (offline: not comparable)"
        if args.fid:
            value, why = rfid(net, loader, rt.device)
            report.update({"rfid": value} if value is not None else {"rfid_skipped": why})
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
    dist.cleanup()


def rfid_unavailable() -> str | None:
    """Why rFID cannot be computed here, or None when a library is installed and downloads are allowed."""
    libs = [m for m in ("torch_fidelity", "cleanfid") if importlib.util.find_spec(m) is not None]
    if not libs:
        return ("neither torch-fidelity nor clean-fid is installed; `pip install torch-fidelity` (its Inception "
                "weights download on first use) to get rFID")
    if os.environ.get("MINIMOVQ_OFFLINE", "0") == "1":
        return (f"{libs[0]} is installed but MINIMOVQ_OFFLINE=1 forbids downloading its Inception weights; "
                "run once with internet, or unset MINIMOVQ_OFFLINE once they are cached")
    return None


def rfid(net, loader, device) -> tuple[float | None, str | None]:
    """rFID between the split and its reconstructions: (value, None), or (None, why it could not be computed)."""
    why = rfid_unavailable()
    if why is not None:
        return None, why
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = Path(tmp, "real"), Path(tmp, "fake")
        i = 0
        for batch in loader:
            x = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(device)
            with torch.no_grad():
                x_hat = net(x).x_hat.clamp(-1, 1)
            for a, b in zip(x, x_hat, strict=True):
                save_grid(a[None], real / f"{i:06d}.png", nrow=1, padding=0)
                save_grid(b[None], fake / f"{i:06d}.png", nrow=1, padding=0)
                i += 1
        try:
            if importlib.util.find_spec("torch_fidelity") is not None:
                import torch_fidelity

                m = torch_fidelity.calculate_metrics(input1=str(real), input2=str(fake), fid=True, verbose=False,
                                                     cuda=device.type == "cuda")
                return float(m["frechet_inception_distance"]), None
            from cleanfid import fid

            return float(fid.compute_fid(str(real), str(fake), device=device)), None
        except Exception as e:  # noqa: BLE001 -- most often: the Inception weights cannot be downloaded
            return None, (f"the FID library failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}); its "
                          "Inception weights download on first use, so run once with internet access")
