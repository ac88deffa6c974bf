"""``python -m minimovq <command>``: train at scale with one readable program, as one process or under torchrun.

=============  =====================================================================================
command        what it does
=============  =====================================================================================
train          train a tokenizer (VQ-VAE, VQGAN, MoVQ); writes DIR/last.pt, metrics.jsonl, samples/
tokenize       encode a dataset into a token file with a trained tokenizer (sharded under torchrun)
train-prior    train a MaskGIT or autoregressive prior on a token file, optionally class-conditional
sample         draw from a prior and decode with its tokenizer into a PNG grid
eval           PSNR, SSIM, LPIPS (and rFID where torch-fidelity or clean-fid can run) over a split
=============  =====================================================================================

The same command runs under ``torchrun --nproc_per_node=N -m minimovq ...``. Bad options are reported as
``error: ...`` (exit status 2) before any work starts. :func:`load_tokenizer` rebuilds a trained tokenizer.
"""
from __future__ import annotations

import argparse
import sys

from .configs import load_tokenizer
from .loop import UsageError

__all__ = ["main", "load_tokenizer", "UsageError"]

COMMANDS = {  # name: (module, its add-options function, its run function, one-line help)
    "train": ("train", "add_arguments", "run", "train a tokenizer (vqvae, vqgan, movq)"),
    "tokenize": ("tools", "add_tokenize_arguments", "tokenize", "turn a dataset into a token file"),
    "train-prior": ("prior", "add_arguments", "run", "train a MaskGIT or autoregressive prior on a token file"),
    "sample": ("tools", "add_sample_arguments", "sample", "sample a prior and write a PNG grid"),
    "eval": ("tools", "add_eval_arguments", "evaluate", "PSNR, SSIM, LPIPS and rFID of a tokenizer over a split"),
}


def _module(name: str):
    import importlib

    return importlib.import_module(f".{COMMANDS[name][0]}", __name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minimovq", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, add, _, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        getattr(_module(name), add)(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command. A :class:`UsageError` prints ``error: ...`` and returns 2."""
    p = parser()
    args = p.parse_args(argv)
    fn = getattr(_module(args.command), COMMANDS[args.command][2])
    try:
        fn(args)
    except UsageError as e:
        from .. import distributed as dist

        dist.cleanup()
        print(f"{p.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
