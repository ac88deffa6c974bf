"""The named tuples every model and quantizer returns: one vocabulary across the package.

=====================================================  ==========================================
call                                                   returns
=====================================================  ==========================================
``quantizer(z)`` (every quantizer)                     ``QuantizerOutput(z_q, vq_loss, indices)``
``model.encode(x)`` (VQVAE, VQGAN, MoVQ)               ``QuantizerOutput(z_q, vq_loss, indices)``
``model(x)`` (VQVAE, VQGAN, MoVQ)                      ``ModelOutput(x_hat, vq_loss, indices)``
=====================================================  ==========================================

Shapes: z_q (B, D, h, w); vq_loss a scalar; indices (B, h, w), or (B, h, w, G) with G codes per position
(multichannel quantization), or (B, h, w, Q) for a residual quantizer's Q stages; x_hat (B, C, H, W).
Both unpack like plain tuples (``x_hat, vq_loss, indices = model(x)``) and read by name (``out.x_hat``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["QuantizerOutput", "ModelOutput", "TokenizedData"]


class QuantizerOutput(NamedTuple):
    """What a quantizer (and a tokenizer's ``encode``) returns.

    z_q: (B, D, h, w) the quantized latent, with straight-through (or rotation-trick) gradients to z.
    vq_loss: () the quantizer's own loss (codebook + β·commitment, commitment only for EMA, 0 for FSQ).
    indices: (B, h, w) long, or (B, h, w, G) with G codes per position; None for a continuous bottleneck
        (``minimovq.vae.GaussianBottleneck``, whose loss slot holds its KL).
    """

    z_q: torch.Tensor
    vq_loss: torch.Tensor
    indices: torch.Tensor


class ModelOutput(NamedTuple):
    """What a tokenizer's ``forward`` returns.

    x_hat: (B, C, H, W) the reconstruction, not clamped.
    vq_loss: () the quantizer's loss.
    indices: as in :class:`QuantizerOutput`.
    """

    x_hat: torch.Tensor
    vq_loss: torch.Tensor
    indices: torch.Tensor


class TokenizedData(NamedTuple):
    """What ``minimovq.tokens.tokenize_dataset`` returns, whatever the data.

    tokens: (N, h, w) long, or (N, h, w, G) with G codes per position, on the CPU.
    labels: (N,) long when the dataset has labels, else None.
    """

    tokens: torch.Tensor
    labels: torch.Tensor | None
