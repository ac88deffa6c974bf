"""Learning a codebook without gradients: the EMA update (online k-means) and batch k-means.

The VQ-VAE paper's appendix learns the codebook as exponential moving averages of the encoder outputs assigned to
each code. Both functions are pure (their inputs are not modified) and never build an N×K one-hot: counts and sums
use ``bincount`` and ``index_add_``, which also makes them sums over rows that add up across processes.
"""
from __future__ import annotations

import torch

from .nearest import nearest_codes

__all__ = ["ema_update", "assignment_stats", "ema_from_stats", "kmeans"]


def ema_update(cluster_size: torch.Tensor, embed_sum: torch.Tensor, z: torch.Tensor, indices: torch.Tensor,
               decay: float = 0.99, eps: float = 1e-5):
    """One EMA codebook step (VQ-VAE appendix), as a pure function: the inputs are not modified.

    cluster_size (K,), embed_sum (K, D), z (N, D), indices (N,) -> (cluster_size, embed_sum, codebook (K, D)).
    """
    counts, sums = assignment_stats(z, indices, cluster_size.shape[0], embed_sum.dtype)
    return ema_from_stats(cluster_size, embed_sum, counts, sums, decay, eps)


def assignment_stats(z: torch.Tensor, indices: torch.Tensor, n_embed: int, dtype: torch.dtype = torch.float32):
    """z (N, D), indices (N,) -> counts (K,) = how many rows chose each code, sums (K, D) = Σ_{i∈k} z_i.

    No one-hot: ``bincount`` and ``index_add_``. Both are sums over rows, so across processes they add up."""
    counts = torch.bincount(indices, minlength=n_embed).to(dtype)  # (K,)
    sums = torch.zeros(n_embed, z.shape[1], dtype=dtype, device=z.device).index_add_(0, indices, z.to(dtype))
    return counts, sums


def ema_from_stats(cluster_size: torch.Tensor, embed_sum: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor,
                   decay: float = 0.99, eps: float = 1e-5):
    """The EMA step from a batch's ``counts`` (K,) and ``sums`` (K, D) -> (cluster_size, embed_sum, codebook)."""
    K = cluster_size.shape[0]
    # N ← d·N + (1−d)·counts
    cluster_size = decay * cluster_size + (1 - decay) * counts
    # m ← d·m + (1−d)·Σ_{i∈k} z_i
    embed_sum = decay * embed_sum + (1 - decay) * sums
    # Laplace smoothing (the additive smoothing of Sonnet's VQ-VAE EMA update):
    # N_s = (N + eps) / (ΣN + K·eps) · ΣN, so no code divides by zero
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + K * eps) * n
    # e = m / N_s
    return cluster_size, embed_sum, embed_sum / smoothed.unsqueeze(1)


def kmeans(x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means on x (N, D) -> centroids (k, D). Starts from random rows; empty clusters stay put."""
    x = x.detach().float()
    device = generator.device if generator is not None else x.device
    centroids = x[torch.randint(x.shape[0], (k,), generator=generator, device=device).to(x.device)].clone()
    for _ in range(iters):
        assign = nearest_codes(x, centroids)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)  # (k, 1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (k, D)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids
