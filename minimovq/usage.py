"""Codebook usage: how many codes a quantizer really uses, per batch or over a whole split.

Perplexity is the effective number of codes, exp(−Σ_k p_k ln p_k): 1 when one code takes every vector, K when all
K codes are used equally. Counting is a ``bincount``; nothing builds a one-hot matrix. ``minimovq.quantize``
re-exports these names.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

__all__ = ["perplexity", "CodebookUsage", "codebook_usage"]


def _perplexity_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """exp(H(p)) with p = counts / Σcounts and the natural log; 0·log 0 counts as 0."""
    p = counts.float() / counts.sum().clamp_min(1)
    entropy = -torch.special.xlogy(p, p).sum()
    return entropy.exp()


def perplexity(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Perplexity of code usage: exp(−Σ_k p_k ln p_k), from 1 (one code) to num_codes (all used equally)."""
    return _perplexity_from_counts(torch.bincount(indices.flatten().long(), minlength=num_codes))


class CodebookUsage:
    """Code usage accumulated over many batches (a whole evaluation split), not one batch::

        usage = CodebookUsage(512)
        for x in loader:
            usage.update(model.encode(x)[-1])
        usage.perplexity(), usage.usage()
    """

    def __init__(self, n_embed: int):
        self.n_embed = n_embed
        self.counts = torch.zeros(n_embed, dtype=torch.long)

    def update(self, indices: torch.Tensor) -> "CodebookUsage":
        """Add the codes in ``indices`` (any shape) to the counts."""
        flat = indices.detach().flatten().long()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.n_embed):
            raise ValueError(f"indices must lie in [0, {self.n_embed}) (n_embed={self.n_embed}), "
                             f"got [{int(flat.min())}, {int(flat.max())}]")
        self.counts = self.counts.to(flat.device) + torch.bincount(flat, minlength=self.n_embed)
        return self

    def reset(self) -> None:
        self.counts = torch.zeros(self.n_embed, dtype=torch.long)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def perplexity(self) -> float:
        """exp(entropy) of the accumulated usage: the effective number of codes."""
        return float(_perplexity_from_counts(self.counts))

    def usage(self) -> float:
        """Fraction of the codebook used at least once."""
        return float((self.counts > 0).float().mean())

    def dead_codes(self) -> torch.Tensor:
        """Indices of the codes never used."""
        return (self.counts == 0).nonzero().squeeze(1).cpu()

    def __repr__(self) -> str:
        return (f"CodebookUsage(n_embed={self.n_embed}, tokens={self.total}, usage={self.usage():.1%}, "
                f"perplexity={self.perplexity():.1f})")


@torch.no_grad()
def codebook_usage(model: nn.Module, loader: Iterable, n_embed: int | None = None,
                   device: torch.device | str | None = None, max_batches: int | None = None,
                   indices_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> CodebookUsage:
    """Run ``model`` over ``loader`` in eval mode and return the :class:`CodebookUsage` of the whole split.

    ``indices_fn(x)`` gives the codes of a batch (default: ``model.encode(x)[-1]``); ``n_embed`` defaults to
    ``model.quantize.n_embed``; (image, label) batches use the images.
    """
    n_embed = n_embed or model.quantize.n_embed
    device = device or next(model.parameters()).device
    indices_fn = indices_fn or (lambda x: model.encode(x)[-1])
    usage, was_training = CodebookUsage(n_embed), model.training
    model.eval()
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            usage.update(indices_fn(x.to(device)))
    finally:
        model.train(was_training)
    return usage
