"""Lookup-free quantization (Yu et al. 2023, MAGVIT-v2, "Language Model Beats Diffusion — Tokenizer is Key to
Visual Generation").

The codebook is the set of corners {−1, +1}^d of a cube: K = 2^d codes with no parameters. Quantizing is a sign,
    z_q = +1 where z > 0, −1 elsewhere          (straight-through gradient),
    index = Σ_j [z_j > 0] · 2^j                  (channel j is bit j: FSQ's basis with every L = 2).

Nothing pulls codes towards the data, so MAGVIT-v2 adds an **entropy penalty** that makes each latent commit
to one corner (low per-sample entropy) while the batch spreads over all corners (high codebook entropy):
    L_entropy = E_z[H(p(·|z))] − γ · H(E_z[p(·|z)]),     p(c|z) ∝ exp(−‖z − c‖² / τ).
Since ‖c‖² = d for every corner, p(c|z) ∝ exp(2 z·c / τ) **factorises over channels**:
p(c_j = +1 | z_j) = σ(4 z_j / τ). So
* the per-sample entropy is exact and cheap: H(p(·|z)) = Σ_j H_b(σ(4 z_j / τ));
* the codebook entropy H(mean_z p(·|z)) does not factorise (the mean of products is not a product of means).
  For d ≤ ``exact_entropy_max_dim`` (default 12, 4096 codes) it is computed exactly, a block of codes at a time:
  log p(c|z) = Σ_j log p(c_j | z_j) is a (N, block) matrix product of log-probabilities with the corners' bits,
  never N × 2^d at once. Above that (MAGVIT-v2 uses d = 18) the joint is replaced by the product of the
  per-bit marginals: Σ_j H_b(mean_z p(c_j = +1 | z)), an upper bound of the joint entropy that is still
  maximal (d bits) exactly when every bit is used half the time, independently.
The loss also has a commitment term β‖z − sg[z_q]‖², as in MAGVIT-v2.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .nearest import CHUNK_ELEMENTS
from .outputs import QuantizerOutput

__all__ = ["LFQ", "lfq_quantize", "bits_to_indices", "indices_to_bits", "entropy_terms", "max_entropy"]


def lfq_quantize(z: torch.Tensor) -> torch.Tensor:
    """z (..., d) -> z_q (..., d) in {−1, +1}: +1 where z > 0, −1 elsewhere, with a straight-through gradient."""
    q = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
    return z + (q - z).detach()


def bits_to_indices(z: torch.Tensor) -> torch.Tensor:
    """z (..., d) -> indices (...) long: Σ_j [z_j > 0] · 2^j."""
    basis = 2 ** torch.arange(z.shape[-1], device=z.device)
    return ((z > 0).long() * basis).sum(-1)


def indices_to_bits(indices: torch.Tensor, dim: int) -> torch.Tensor:
    """Indices (...) -> corners (..., dim) in {−1, +1}, fp32."""
    basis = 2 ** torch.arange(dim, device=indices.device)
    return ((indices.long().unsqueeze(-1) // basis) % 2).float() * 2 - 1


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """−p ln p elementwise, with a finite gradient at p = 0 (where −p ln p is 0)."""
    return -p * p.clamp_min(1e-30).log()


def _binary_entropy_from_logits(x: torch.Tensor) -> torch.Tensor:
    """H_b(σ(x)) = −p ln p − (1 − p) ln(1 − p) with p = σ(x), from the logit: p·softplus(−x) + (1 − p)·softplus(x).
    Stable and with finite gradients even where σ saturates (τ = 0.01 makes logits of several hundred)."""
    p = torch.sigmoid(x)
    return p * F.softplus(-x) + (1 - p) * F.softplus(x)


def entropy_terms(z: torch.Tensor, temperature: float = 0.01, exact_max_dim: int = 12,
                  chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, d) -> (per-sample entropy (), codebook entropy ()) in nats, differentiable, fp32.

    p(c_j = +1 | z_j) = σ(4 z_j / τ); per-sample entropy = mean_i Σ_j H_b(p_ij); codebook entropy = H(mean_i p(·|z_i))
    over the 2^d corners, exactly (blocks of codes) when d ≤ ``exact_max_dim``, else Σ_j H_b(mean_i p_ij).
    """
    z = z.float()
    N, d = z.shape
    logit = 4 * z / temperature                                               # (N, d)
    per_sample = _binary_entropy_from_logits(logit).sum(1).mean()
    if d > exact_max_dim:
        m = torch.sigmoid(logit).mean(0)                                      # (d,) how often each bit is +1
        return per_sample, (_entropy(m) + _entropy(1 - m)).sum()
    logp_plus, logp_minus = F.logsigmoid(logit), F.logsigmoid(-logit)       # (N, d) each
    K = 2 ** d
    block = max(1, chunk_elements // max(N, 1))
    avg = []
    for start in range(0, K, block):
        bits = (indices_to_bits(torch.arange(start, min(K, start + block), device=z.device), d) > 0).float()
        # log p(c|z) = Σ_j [c_j = +1] log p_j + [c_j = −1] log(1 − p_j): (N, d) @ (d, block)
        log_p = logp_plus @ bits.t() + logp_minus @ (1 - bits).t()            # (N, block)
        avg.append(log_p.exp().mean(0))
    avg = torch.cat(avg)                                                      # (K,) mean_z p(c|z), sums to 1
    return per_sample, _entropy(avg).sum()


class LFQ(nn.Module):
    """Lookup-free quantization as a drop-in quantizer: ``forward(z)`` with z (B, dim, H, W).

    Returns QuantizerOutput(z_q (B, dim, H, W) in {−1, +1}, vq_loss (), indices (B, H, W) in [0, 2^dim)).

    Args:
        dim: the bits per position d; the implicit codebook has 2^d corners (``n_embed``).
        entropy_weight: weight of the entropy penalty (MAGVIT-v2: 0.1); 0 turns it off.
        diversity_gamma: γ, the weight of the codebook entropy inside the penalty (1 in the paper).
        commitment_weight: β of the commitment term β‖z − sg[z_q]‖².
        temperature: τ of the soft assignment p(c|z) used only by the penalty.
        exact_entropy_max_dim: largest d for which the codebook entropy is exact (see the module docstring).

    No parameters: the state dict is empty. The loss runs in fp32 (also under autocast).
    """

    def __init__(self, dim: int, entropy_weight: float = 0.1, diversity_gamma: float = 1.0,
                 commitment_weight: float = 0.25, temperature: float = 0.01, exact_entropy_max_dim: int = 12):
        super().__init__()
        if dim < 1 or dim > 62:
            raise ValueError(f"dim must be in [1, 62] (indices are int64 bit patterns), got {dim}; MAGVIT-v2 uses 18")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}; 0.01 is a common choice")
        self.dim, self.embed_dim, self.n_embed, self.groups = dim, dim, 2 ** dim, 1
        self.entropy_weight, self.diversity_gamma = entropy_weight, diversity_gamma
        self.commitment_weight, self.temperature = commitment_weight, temperature
        self.exact_entropy_max_dim = exact_entropy_max_dim

    @property
    def bits(self) -> float:
        return float(self.dim)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z (B, d, H, W) -> QuantizerOutput(z_q (B, d, H, W), vq_loss (), indices (B, H, W))."""
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"LFQ expects z of shape (B, {self.dim}, H, W) (one channel per bit, dim={self.dim}), "
                             f"got {tuple(z.shape)}; make the encoder output embed_dim={self.dim} channels")
        flat = rearrange(z, "b d h w -> (b h w) d").float()                   # (N, d)
        z_q = lfq_quantize(flat)                                              # (N, d), ±1
        # β‖z − sg[z_q]‖²
        loss = self.commitment_weight * F.mse_loss(flat, z_q.detach())
        if self.entropy_weight:
            per_sample, codebook = entropy_terms(flat, self.temperature, self.exact_entropy_max_dim)
            # E[H(p(·|z))] − γ H(E[p(·|z)])
            loss = loss + self.entropy_weight * (per_sample - self.diversity_gamma * codebook)
        B, _, H, W = z.shape
        indices = bits_to_indices(flat).view(B, H, W)
        z_q = rearrange(z_q, "(b h w) d -> b d h w", b=B, h=H, w=W).to(z.dtype)
        return QuantizerOutput(z_q, loss, indices)

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, H, W) -> z_q (B, d, H, W) in {−1, +1}, fp32."""
        if indices.ndim != 3:
            raise ValueError(f"indices must have shape (B, H, W), got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_embed):
            raise ValueError(f"indices must lie in [0, 2^{self.dim} = {self.n_embed}), "
                             f"got [{int(indices.min())}, {int(indices.max())}]")
        return rearrange(indices_to_bits(indices, self.dim), "b h w d -> b d h w")

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_embed={self.n_embed}, entropy_weight={self.entropy_weight}, "
                f"diversity_gamma={self.diversity_gamma}, commitment_weight={self.commitment_weight}, "
                f"temperature={self.temperature}")


def max_entropy(dim: int) -> float:
    """ln 2^dim: the codebook entropy when every corner is equally used (nats)."""
    return dim * math.log(2)
