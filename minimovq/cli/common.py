"""Small pieces the commands share: runtime options, loading a dataset with a clear error, PNG grids, the bar."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import data
from .loop import UsageError

__all__ = ["add_runtime_options", "load_images", "save_grid", "progress"]


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    """--device, --amp, --channels-last, --compile and --workers."""
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cuda or cpu")
    p.add_argument("--amp", default="auto", help="auto (bf16, or fp16 + GradScaler on a T4; off on CPU), "
                   "bf16, fp16 or off")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: on for CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers per process "
                   "(default: data.default_num_workers())")


def load_images(name: str, split: str, image_size: int, n: int | None = None, labels: bool = False):
    """``data.load(...)``, with a missing folder, an unknown name or unavailable files as a :class:`UsageError`."""
    try:
        return data.load(name, split=split, image_size=image_size, n=n, labels=labels)
    except (ValueError, data.DatasetUnavailableError, FileNotFoundError) as e:
        raise UsageError(f"--data {name!r}: {e}") from e


def workers(n: int | None) -> int:
    return data.default_num_workers() if n is None else n


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """Write images (B, 3, H, W) in [-1, 1] as one PNG grid."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(((images.float().cpu() + 1) / 2).clamp(0, 1), path, nrow=nrow, padding=padding)
    return path


def progress(total: int, initial: int, desc: str, show: bool):
    """A tqdm bar on rank 0 only."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not show, dynamic_ncols=True)
