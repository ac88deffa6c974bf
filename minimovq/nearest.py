"""Nearest-code search, the hot path of every vector quantizer: argmin_k ‖z_i − e_k‖² for N rows and K codes.

Never an N×K one-hot and never all N×K distances at once: a (chunk, K) block at a time, in fp32 even under
autocast (fp16 distances tie and overflow).
"""
from __future__ import annotations

import torch

__all__ = ["nearest_codes", "CHUNK_ELEMENTS"]

CHUNK_ELEMENTS = 2 ** 22  # distances held at once by default: 4M floats = 16 MiB, whatever N and K are


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Index of the nearest code for every row of ``z``: z (N, D), codebook (K, D) -> LongTensor (N,).

    Computed in fp32 even under autocast, ``chunk_size`` rows at a time (default: 2**22 // K), so only a
    (chunk, K) block of distances ever exists. Ties go to the lowest index, as in ``torch.argmin``.
    """
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest_codes expects z (N, D) and codebook (K, D) with the same D, "
                         f"got z {tuple(z.shape)} and codebook {tuple(codebook.shape)}")
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // codebook.shape[0])
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        z, e = z.detach().float(), codebook.detach().float()
        e_sq = e.pow(2).sum(1)  # (K,)
        for start in range(0, z.shape[0], chunk):
            # ‖z − e‖² = ‖z‖² + ‖e‖² − 2 z·eᵀ; ‖z‖² is the same for every code, so the argmin leaves it out
            dist = torch.addmm(e_sq, z[start:start + chunk], e.t(), alpha=-2.0)  # (chunk, K)
            out[start:start + chunk] = dist.argmin(dim=1)
    return out
