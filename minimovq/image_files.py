"""Reading one image file the way a person sees it: EXIF rotation applied, 16-bit images scaled (not clipped
to white), and a file that cannot be decoded reported by name with the fix.

>>> img = open_rgb("photo.jpg")                # PIL RGB image, upright
>>> bad = find_unreadable(files)               # [(path, reason)] of the files that do not decode
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """An image file is corrupt, truncated or not an image."""


def _why(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__


def _to_8bit(img: Image.Image) -> Image.Image:
    """High bit-depth grayscale ("I;16*", "I", "F") -> "L" scaled to its full range; other modes unchanged.

    PIL's ``convert("RGB")`` clips a 16-bit value v to min(v, 255), which turns a 16-bit PNG all white; here
    v8 = round(v · 255 / 65535) for 16-bit data (and v8 = round(v · 255) for float images in [0, 1])."""
    if not (img.mode.startswith("I") or img.mode == "F"):
        return img
    a = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.size and a.max() > 255):
        scale = 65535.0
    elif img.mode == "F" and a.size and a.max() <= 1.0:
        scale = 1.0
    else:
        scale = 255.0
    return Image.fromarray(np.clip(np.round(a * (255.0 / scale)), 0, 255).astype(np.uint8), "L")


def open_rgb(path) -> Image.Image:
    """The image at ``path`` as an upright 8-bit PIL RGB image (grayscale, palette, RGBA, 16-bit all become
    3 channels; the EXIF orientation of a phone photo is applied). Raises :class:`UnreadableImageError`
    naming the file when it does not decode."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)          # a phone's portrait JPEG is stored sideways + a tag
            return _to_8bit(img).convert("RGB")
    except _DECODE_ERRORS as e:
        raise UnreadableImageError(
            f"could not read image {path} ({_why(e)}): the file is corrupt, truncated or not an image. Delete it, "
            "or re-save it (open it in an image editor and save it again).") from e


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float in [0, 1]."""
    return rearrange(torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()), "h w c -> c h w").float() / 255.0


def images_under(folder: Path) -> list[Path]:
    """Every file with an image extension under ``folder`` (recursive), sorted."""
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())


def find_unreadable(files: list[Path], progress: bool | None = None) -> list[tuple[Path, str]]:
    """``[(path, reason)]`` for every file that does not decode, found by decoding each one once.

    JPEGs decode at reduced scale (``draft``), which still reads the whole stream, so a truncated file is
    caught; about 1 ms per image. ``progress``: a tqdm bar (default: for more than 2,000 files)."""
    from tqdm.auto import tqdm

    bad = []
    show = len(files) > 2000 if progress is None else progress
    for f in tqdm(files, desc="checking images", disable=not show, mininterval=1.0):
        try:
            with Image.open(f) as img:
                if img.format == "JPEG":
                    img.draft("RGB", (64, 64))
                img.load()
        except _DECODE_ERRORS as e:
            bad.append((f, _why(e)))
    return bad
