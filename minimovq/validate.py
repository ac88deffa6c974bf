"""Input checks shared by every model: bad input fails early with a message that names the fix."""
from __future__ import annotations

import torch


def check_images(x: torch.Tensor, *, channels: int | None = None, size: int | tuple[int, int] | None = None,
                 multiple_of: int | None = None, check_range: bool = True, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``x`` is a float batch (B, C, H, W) of images in [-1, 1].

    Args:
        channels: the expected C.
        size: the expected H (and W), if fixed.
        multiple_of: H and W must be divisible by this (the model's downsampling factor).
        check_range: also check values lie in [-1, 1] (a small tolerance allows rounding).
    """
    c = channels if channels is not None else "C"
    expected = f"(B, {c}, H, W)"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if x.ndim != 4:
        hint = " — add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        hint = ""
        if x.shape[-1] == channels:
            hint = " — it looks channels-last: use x.permute(0, 3, 1, 2)"
        elif x.shape[1] == 1 and channels == 3:
            hint = " — for grayscale images use x.repeat(1, 3, 1, 1)"
        raise ValueError(f"{name} must have shape {expected} with C={channels}, got {tuple(x.shape)}{hint}")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != hw:
            raise ValueError(f"{name} must be {hw[0]}x{hw[1]} pixels, got {tuple(x.shape)}; resize them first")
    if multiple_of is not None and (x.shape[-2] % multiple_of or x.shape[-1] % multiple_of):
        raise ValueError(f"{name} height and width must be multiples of {multiple_of} (the downsampling factor), "
                         f"got {tuple(x.shape)}; resize or crop them")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}; "
                         "for uint8 images use x.float() / 127.5 - 1")
    if check_range and x.numel():
        lo, hi = x.detach().aminmax()
        lo, hi = float(lo), float(hi)
        if lo < -1.01 or hi > 1.01:
            hint = " (it looks like [0, 255]: use x / 127.5 - 1)" if hi > 2 else ""
            raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
