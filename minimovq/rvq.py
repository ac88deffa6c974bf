"""Residual vector quantization (SoundStream, Zeghidour et al. 2021; RQ-VAE, Lee et al. 2022).

One codebook of K codes spends log2 K bits per position. Q codebooks used in sequence spend Q·log2 K: stage 1
quantizes z, stage 2 quantizes what stage 1 left over, and so on,

    r_1 = z,   e_i = Q_i(r_i),   r_{i+1} = r_i − e_i,   z_q = Σ_{i=1..Q} e_i,

so the cells of stage i + 1 subdivide every cell of stage i (a coarse-to-fine code). The effective codebook has
K^Q points for Q·K stored vectors.

Gradients. Each stage is an ordinary :class:`~minimovq.quantize.VectorQuantizer` (or EMA) and contributes its own
loss on its residual (codebook + β·commitment). The decoder's gradient reaches z through **one** straight-through
estimator on the sum, z_q = z + sg[Σ e_i − z] (summing the stages' own straight-through outputs would hand z the
gradient Q times). ``rotation_trick=True`` uses the rotation trick for that one step instead (z rotated onto Σ e_i).

Quantizer dropout (SoundStream): in training, with probability ``quantizer_dropout`` a batch uses only its first
n ~ U{1..Q} stages, so the decoder learns to decode every depth (one model, several bitrates). SoundStream draws n
per example; here one n is drawn per batch. Stages left out get index −1.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from .outputs import QuantizerOutput
from .quantize import EMAVectorQuantizer, VectorQuantizer, straight_through
from .rotation import rotate_to

__all__ = ["ResidualVQ"]


class ResidualVQ(nn.Module):
    """Q stage quantizers on successive residuals: ``forward(z)`` with z (B, embed_dim, H, W).

    Returns QuantizerOutput(z_q (B, D, H, W) = Σ stage codes, vq_loss () = Σ stage losses,
    indices (B, H, W, Q), −1 for stages left out). ``.layers`` is the ``nn.ModuleList`` of the stages.

    Args:
        num_quantizers: Q, the number of stages.
        n_embed: K, codes per stage. ``embed_dim``: D, the latent width (every stage works on all D channels).
        quantizer: ``"vq"`` (loss-based) or ``"ema"``; ``beta`` the commitment weight of every stage.
        quantizer_dropout: probability that a training batch uses a random prefix of the stages.
        rotation_trick: the rotation trick instead of straight-through for the sum (see the module docstring).
        **quantizer_kwargs: passed to every stage (``dead_code_threshold``, ``kmeans_init``, ``decay``, ...).
    """

    def __init__(self, num_quantizers: int, n_embed: int, embed_dim: int, quantizer: str = "vq", beta: float = 0.25,
                 quantizer_dropout: float = 0.0, rotation_trick: bool = False, **quantizer_kwargs):
        super().__init__()
        if num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if quantizer not in ("vq", "ema"):
            raise ValueError(f"quantizer must be 'vq' or 'ema', got {quantizer!r}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout is a probability in [0, 1], got {quantizer_dropout}")
        if "rotation_trick" in quantizer_kwargs or "groups" in quantizer_kwargs:
            raise ValueError("pass rotation_trick to ResidualVQ itself (it applies to the sum); groups is not "
                             "supported by ResidualVQ")
        cls = VectorQuantizer if quantizer == "vq" else EMAVectorQuantizer
        self.layers = nn.ModuleList(cls(n_embed, embed_dim, beta=beta, **quantizer_kwargs)
                                    for _ in range(num_quantizers))
        self.num_quantizers, self.n_embed, self.embed_dim = num_quantizers, n_embed, embed_dim
        self.quantizer_dropout, self.rotation_trick = quantizer_dropout, rotation_trick

    @property
    def bits(self) -> float:
        """Bits per position at full depth: Q · log2 K."""
        return self.num_quantizers * math.log2(self.n_embed)

    def forward(self, z: torch.Tensor, n_quantizers: int | None = None) -> QuantizerOutput:
        """z (B, D, H, W) -> QuantizerOutput(z_q (B, D, H, W), vq_loss (), indices (B, H, W, Q)).

        ``n_quantizers`` uses only the first n stages (e.g. to measure rate against distortion at each depth).
        """
        Q = self.num_quantizers
        if z.ndim != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(f"ResidualVQ expects z of shape (B, {self.embed_dim}, H, W) (embed_dim="
                             f"{self.embed_dim}), got {tuple(z.shape)}; make the encoder output that many channels")
        n = Q if n_quantizers is None else int(n_quantizers)
        if not 1 <= n <= Q:
            raise ValueError(f"n_quantizers must be in [1, {Q}] (num_quantizers={Q}), got {n_quantizers}")
        if self.training and self.quantizer_dropout > 0 and n_quantizers is None \
                and float(torch.rand(())) < self.quantizer_dropout:
            n = int(torch.randint(1, Q + 1, ()))
        B, _, H, W = z.shape
        residual = z
        total = torch.zeros_like(z, dtype=torch.float32)
        loss = z.new_zeros((), dtype=torch.float32)
        indices = torch.full((B, H, W, Q), -1, dtype=torch.long, device=z.device)
        for i, layer in enumerate(self.layers[:n]):
            e_i, loss_i, idx_i = layer(residual)
            e_i = e_i.detach().float()                    # the code's value; gradients go through the sum below
            total = total + e_i                           # z_q = Σ e_i
            residual = residual - e_i.to(residual.dtype)  # r_{i+1} = r_i − e_i (its gradient still reaches z)
            loss = loss + loss_i
            indices[..., i] = idx_i
        flat, flat_q = rearrange(z, "b d h w -> (b h w) d"), rearrange(total, "b d h w -> (b h w) d")  # (N, D)
        z_q = rotate_to(flat, flat_q) if self.rotation_trick else straight_through(flat, flat_q)
        z_q = rearrange(z_q, "(b h w) d -> b d h w", b=B, h=H, w=W)
        return QuantizerOutput(z_q.to(z.dtype), loss, indices)

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, H, W, Q') with Q' <= Q stages (−1: stage left out) -> z_q (B, D, H, W) = Σ stage codes."""
        if indices.ndim == 3:
            indices = indices.unsqueeze(-1)
        if indices.ndim != 4 or not 1 <= indices.shape[-1] <= self.num_quantizers:
            raise ValueError(f"indices must have shape (B, H, W, Q) with Q <= {self.num_quantizers}, "
                             f"got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= self.n_embed):
            raise ValueError(f"indices must lie in [0, {self.n_embed}) (or −1 for a stage left out), "
                             f"got [{int(indices.min())}, {int(indices.max())}]")
        B, H, W, n = indices.shape
        z_q = torch.zeros(B, self.embed_dim, H, W, device=indices.device)
        for i in range(n):
            idx = indices[..., i]
            used = (idx >= 0).unsqueeze(1)                               # (B, 1, H, W)
            z_q = z_q + self.layers[i].get_codebook_entry(idx.clamp_min(0)).float() * used
        return z_q

    def joint_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, H, W, Q) stage indices -> (B, H, W) one index in [0, K^Q): Σ_i idx_i · K^i (to count usage)."""
        basis = self.n_embed ** torch.arange(indices.shape[-1], device=indices.device)
        return (indices.clamp_min(0) * basis).sum(-1)

    def extra_repr(self) -> str:
        return (f"num_quantizers={self.num_quantizers}, n_embed={self.n_embed}, embed_dim={self.embed_dim}, "
                f"quantizer_dropout={self.quantizer_dropout}, rotation_trick={self.rotation_trick}")
