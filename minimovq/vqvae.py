"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning"), the paper's architecture.

x (B, C, H, W) ─ encoder ─> (B, hidden, H/4, W/4) ─ quant_conv ─> z_e (B, D, H/4, W/4) ─ quantize ─> z_q
z_q ─ decoder ─> x̂ (B, C, H, W)

* Encoder: two strided convolutions (4×4, stride 2), a 3×3 convolution, then a stack of residual blocks
  (ReLU, 3×3 conv, ReLU, 1×1 conv), each with a skip connection, and a final ReLU.
* ``quant_conv``: a 1×1 convolution to the codebook's width D (Sonnet calls it ``pre_vq_conv``).
* Decoder: a 3×3 convolution, the same residual stack, then two transposed convolutions (4×4, stride 2).
  The output is not clamped.

The quantizer is either of :mod:`minimovq.quantize`'s (``"ema"``, the paper's appendix, or ``"vq"``), or any
module with the same ``forward(z) -> (z_q, loss, indices)`` and ``get_codebook_entry(indices)``. The
defaults are Sonnet's CIFAR-10 example: hidden 128, res_hidden 32, 2 residual layers, D=64, K=512.
"""
from __future__ import annotations

import torch
from torch import nn

from .outputs import ModelOutput, QuantizerOutput
from .quantize import EMAVectorQuantizer, VectorQuantizer
from .validate import check_images

__all__ = ["ResidualStack", "VQVAE"]


class ResidualStack(nn.Module):
    """``num_layers`` residual blocks x + conv1×1(relu(conv3×3(relu(x)))), then a ReLU. (B, C, H, W) -> same."""

    def __init__(self, channels: int, res_hidden: int, num_layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(channels, res_hidden, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(res_hidden, channels, 1))
            for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return torch.relu(x)


class VQVAE(nn.Module):
    """A VQ-VAE that downsamples by 4: images (B, C, H, W) in [-1, 1], H and W multiples of 4.

    Args:
        in_channels: image channels C.
        hidden: channels of the encoder/decoder trunk (the paper uses 256, Sonnet's example 128).
        res_hidden: channels inside each residual block.
        num_res_layers: residual blocks in the encoder and in the decoder.
        embed_dim: the code width D.
        n_embed: the codebook size K.
        quantizer: ``"ema"`` (EMAVectorQuantizer), ``"vq"`` (VectorQuantizer) or a ready module.
        beta: the commitment weight β.
        decay: the EMA decay (``"ema"`` only).
        quantizer_kwargs: more options for the quantizer (``groups``, ``l2_norm``, ``dead_code_threshold``,
            ``kmeans_init``, ``legacy``, ...).
    """

    def __init__(self, in_channels: int = 3, hidden: int = 128, res_hidden: int = 32, num_res_layers: int = 2,
                 embed_dim: int = 64, n_embed: int = 512, quantizer: str | nn.Module = "ema", beta: float = 0.25,
                 decay: float = 0.99, quantizer_kwargs: dict | None = None):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"hidden must be even (the first conv has hidden // 2 channels), got {hidden}")
        self.in_channels, self.embed_dim, self.n_embed = in_channels, embed_dim, n_embed
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),  # H/2
            nn.Conv2d(hidden // 2, hidden, 4, stride=2, padding=1), nn.ReLU(),       # H/4
            nn.Conv2d(hidden, hidden, 3, padding=1),
            ResidualStack(hidden, res_hidden, num_res_layers))
        self.quant_conv = nn.Conv2d(hidden, embed_dim, 1)
        self.quantize = self._make_quantizer(quantizer, n_embed, embed_dim, beta, decay, quantizer_kwargs or {})
        self.decoder = nn.Sequential(
            nn.Conv2d(embed_dim, hidden, 3, padding=1),
            ResidualStack(hidden, res_hidden, num_res_layers),
            nn.ConvTranspose2d(hidden, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),  # H/2
            nn.ConvTranspose2d(hidden // 2, in_channels, 4, stride=2, padding=1))        # H

    @staticmethod
    def _make_quantizer(quantizer, n_embed, embed_dim, beta, decay, kwargs) -> nn.Module:
        if isinstance(quantizer, nn.Module):
            return quantizer
        if quantizer == "ema":
            return EMAVectorQuantizer(n_embed, embed_dim, beta=beta, decay=decay, **kwargs)
        if quantizer == "vq":
            return VectorQuantizer(n_embed, embed_dim, beta=beta, **kwargs)
        raise ValueError(f"quantizer must be 'ema', 'vq' or an nn.Module, got {quantizer!r}")

    def encode(self, x: torch.Tensor) -> QuantizerOutput:
        """x (B, C, H, W) -> QuantizerOutput(z_q (B, D, H/4, W/4), vq_loss (), indices (B, H/4, W/4))
        (indices (B, H/4, W/4, G) with groups)."""
        check_images(x, channels=self.in_channels, multiple_of=4, name=f"{type(self).__name__} input",
                     dtype=self.quant_conv.weight.dtype)
        z_e = self.quant_conv(self.encoder(x))
        return QuantizerOutput(*self.quantize(z_e))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, h, w) -> x̂ (B, C, 4h, 4w)."""
        return self.decoder(z_q)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) (or (B, h, w, G)) -> x̂ (B, C, 4h, 4w), for any batch size and grid."""
        return self.decode(self.quantize.get_codebook_entry(indices))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x (B, C, H, W) -> ModelOutput(x_hat (B, C, H, W), vq_loss (), indices (B, H/4, W/4))."""
        z_q, vq_loss, indices = self.encode(x)
        return ModelOutput(self.decode(z_q), vq_loss, indices)
