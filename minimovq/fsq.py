"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

No codebook is learned. Each of the D = len(levels) channels is squashed into a bounded interval and rounded
to one of L_i evenly spaced values; the codebook is the fixed grid of Π L_i points, and every point of it is
reachable by construction, so there is nothing to collapse and no codebook or commitment loss.

Per channel with L levels (the paper's Appendix A.1, number for number):

    half_l = (L − 1)(1 − ε)/2,  ε = 1e-3      (the ε keeps tanh's limits strictly inside the outer levels)
    offset = 0.5 if L is even else 0           (an even L has no level at 0: shift the grid by half a step)
    shift  = tan(offset / half_l)
    bound(z) = tanh(z + shift) · half_l − offset
    ẑ = round_ste(bound(z)) / (L // 2)         (straight-through rounding, then back to about [−1, 1])

``shift="atanh"`` is the common variant (e.g. in later PyTorch ports): tanh(z + atanh(offset/half_l))·half_l
equals offset exactly at z = 0, so bound(0) = 0 and the interval is centred on the grid; the paper's ``tan`` is
the same to first order (tan x ≈ atanh x ≈ x), off by about x⁵/15. atanh needs offset/half_l < 1, which fails for
L = 2 (offset/half_l = 1/(1 − ε)), so that variant requires L ≥ 3 for even L.

Indices use the mixed-radix basis cumprod([1] + levels[:-1]): index = Σ_i digit_i · basis_i with digit_i in
[0, L_i).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from einops import rearrange
from torch import nn

from .outputs import QuantizerOutput

__all__ = ["FSQ", "bound", "round_ste", "fsq_quantize", "codes_to_indices", "indices_to_codes"]

SHIFTS = ("tan", "atanh")


def _levels(levels: Sequence[int] | torch.Tensor, device=None) -> torch.Tensor:
    lv = torch.as_tensor(levels, device=device)
    if lv.ndim != 1 or lv.numel() == 0 or lv.is_floating_point() or bool((lv < 2).any()):
        raise ValueError(f"levels must be a non-empty list of integers >= 2 (one per channel), got {levels!r}; "
                         "the paper's sets are e.g. [8, 8, 8] (2^9 codes) or [8, 5, 5, 5] (2^10)")
    return lv.long()


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round with a straight-through gradient: the value of round(z), the gradient of z."""
    return z + (torch.round(z) - z).detach()


def bound(z: torch.Tensor, levels: Sequence[int] | torch.Tensor, eps: float = 1e-3, shift: str = "tan") -> torch.Tensor:
    """Squash z (..., d) channel-wise into (−half_l − offset, half_l − offset): L_i roundable values per channel.

    bound(z) = tanh(z + shift) · half_l − offset, half_l = (L − 1)(1 − ε)/2, offset = 0.5 for even L, else 0,
    shift = tan(offset / half_l) (the paper) or atanh(offset / half_l) (centred, ``shift="atanh"``).
    """
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}; 'tan' is the paper's Appendix A.1")
    lv = _levels(levels, z.device).to(z.dtype)
    if z.shape[-1] != lv.numel():
        raise ValueError(f"z's last axis has {z.shape[-1]} channels but levels has {lv.numel()} entries; "
                         f"FSQ needs one level count per channel (channel-last z of shape (..., {lv.numel()}))")
    half_l = (lv - 1) * (1 - eps) / 2
    offset = torch.where(lv % 2 == 0, 0.5, 0.0).to(z.dtype)
    s = torch.tan(offset / half_l) if shift == "tan" else torch.atanh(offset / half_l)
    return torch.tanh(z + s) * half_l - offset


def fsq_quantize(z: torch.Tensor, levels: Sequence[int] | torch.Tensor, eps: float = 1e-3,
                 shift: str = "tan") -> torch.Tensor:
    """The paper's quantize: z (..., d) channel-last -> ẑ (..., d) on the grid, about in [−1, 1].

    ẑ = round_ste(bound(z)) / (L // 2), with straight-through gradients through the rounding.
    """
    half_width = (_levels(levels, z.device) // 2).to(z.dtype)
    return round_ste(bound(z, levels, eps, shift)) / half_width


def codes_to_indices(z_hat: torch.Tensor, levels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Grid points ẑ (..., d) -> indices (...) long: Σ_i (ẑ_i · (L_i // 2) + L_i // 2) · basis_i."""
    lv = _levels(levels, z_hat.device)
    basis = torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0)           # (d,)
    half_width = lv // 2
    digits = torch.round(z_hat.detach().float() * half_width + half_width).long()  # (..., d) in [0, L_i)
    return (digits * basis).sum(-1)


def indices_to_codes(indices: torch.Tensor, levels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Indices (...) -> grid points ẑ (..., d) in fp32, the inverse of :func:`codes_to_indices`."""
    lv = _levels(levels, indices.device)
    basis = torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0)
    half_width = lv // 2
    digits = (indices.long().unsqueeze(-1) // basis) % lv                    # (..., d)
    return (digits - half_width).float() / half_width.float()


class FSQ(nn.Module):
    """Finite scalar quantization as a drop-in quantizer: ``forward(z)`` with z (B, D, H, W), D = len(levels).

    Returns QuantizerOutput(z_q (B, D, H, W), vq_loss = 0, indices (B, H, W) in [0, Π L_i)). No parameters and no
    state: the state dict is empty. ``n_embed`` is the implicit codebook size Π L_i, ``embed_dim`` = D. The
    arithmetic runs in fp32 (also under autocast); z_q comes back in z's dtype.
    """

    def __init__(self, levels: Sequence[int], eps: float = 1e-3, shift: str = "tan"):
        super().__init__()
        lv = _levels(levels)
        if shift not in SHIFTS:
            raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}; 'tan' is the paper's Appendix A.1")
        if shift == "atanh" and bool(((lv == 2)).any()):
            raise ValueError(f"shift='atanh' is undefined for L = 2 (atanh of 1/(1 − eps) > 1), got levels "
                             f"{lv.tolist()}; use shift='tan' or levels >= 3")
        self.levels = [int(v) for v in lv]
        self.eps, self.shift = eps, shift
        self.n_embed, self.embed_dim, self.groups = math.prod(self.levels), len(self.levels), 1
        self.register_buffer("_grid_levels", lv, persistent=False)  # follows .to(device); not saved

    @property
    def bits(self) -> float:
        """log2 of the implicit codebook size: the bits one position carries."""
        return math.log2(self.n_embed)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z (B, D, H, W) -> QuantizerOutput(z_q (B, D, H, W), vq_loss () = 0, indices (B, H, W))."""
        if z.ndim != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(f"FSQ expects z of shape (B, {self.embed_dim}, H, W) (one channel per level, "
                             f"levels={self.levels}), got {tuple(z.shape)}; make the encoder output "
                             f"embed_dim={self.embed_dim} channels")
        zc = rearrange(z, "b d h w -> b h w d").float()                       # channel-last (B, H, W, D)
        z_hat = fsq_quantize(zc, self._grid_levels, self.eps, self.shift)     # (B, H, W, D)
        indices = codes_to_indices(z_hat, self._grid_levels)                  # (B, H, W)
        z_q = rearrange(z_hat, "b h w d -> b d h w").to(z.dtype)
        return QuantizerOutput(z_q, z.new_zeros((), dtype=torch.float32), indices)

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, H, W) -> z_q (B, D, H, W) fp32, for any batch and grid."""
        if indices.ndim != 3:
            raise ValueError(f"indices must have shape (B, H, W), got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_embed):
            raise ValueError(f"indices must lie in [0, {self.n_embed}) (Π levels = {self.n_embed}), "
                             f"got [{int(indices.min())}, {int(indices.max())}]")
        return rearrange(indices_to_codes(indices, self._grid_levels), "b h w d -> b d h w")

    def codebook(self) -> torch.Tensor:
        """The whole implicit codebook (Π L_i, D), in index order: for pictures and small level sets."""
        return indices_to_codes(torch.arange(self.n_embed, device=self._grid_levels.device), self._grid_levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, n_embed={self.n_embed}" + (f", shift={self.shift!r}" if self.shift != "tan"
                                                                    else "")
