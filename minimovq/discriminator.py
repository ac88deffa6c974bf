"""The PatchGAN discriminator of pix2pix, as VQGAN uses it (taming's NLayerDiscriminator).

Instead of one real/fake score per image, PatchGAN outputs a *grid* of logits. Each logit sees only a
``patchgan_receptive_field(n_layers)`` square of the input (70×70 px for n_layers=3), so the
discriminator judges local texture and edges, which is exactly what an L1 + LPIPS autoencoder blurs,
and leaves global structure to the reconstruction losses.

Layers (``main.<idx>``; the LeakyReLUs count in the indices)::

    Conv4×4 s2 p1 (3 -> ndf, bias)                       LeakyReLU(0.2)
    for n = 1 .. n_layers-1:  Conv4×4 s2 p1 (no bias)  BatchNorm  LeakyReLU(0.2)   ndf·min(2ⁿ, 8) ch
    Conv4×4 s1 p1 (no bias)  BatchNorm  LeakyReLU(0.2)                            ndf·min(2^n_layers, 8)
    Conv4×4 s1 p1 (-> 1, bias)

Init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), BatchNorm biases 0. With n_layers=3 and
ndf=64: 2,765,633 parameters and a (B, 1, 30, 30) logit map for a 256 px input.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from minimovq.validate import check_images

__all__ = ["NLayerDiscriminator", "patchgan_receptive_field", "weights_init"]


def patchgan_receptive_field(n_layers: int) -> int:
    """Receptive field, in pixels, of one output logit of ``NLayerDiscriminator(n_layers=...)``.

    Walk the layers from the output back to the input: a k×k conv with stride s grows a field of r
    pixels to ``r' = (r − 1)·s + k``. The stack is n_layers 4×4 convs with stride 2, then two with
    stride 1. n_layers=3 gives 1 -> 4 -> 7 -> 16 -> 34 -> 70.
    """
    if int(n_layers) != n_layers or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1, got {n_layers!r}")
    strides = [2] * int(n_layers) + [1, 1]
    r = 1
    for s in reversed(strides):
        # r' = (r − 1)·s + k, with k = 4
        r = (r - 1) * s + 4
    return r


def weights_init(m: nn.Module) -> None:
    """pix2pix / taming init: conv weight ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias = 0."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator. forward(x: (B, input_nc, H, W)) -> logits (B, 1, H', W').

    For H = 256: H' = 30 (n_layers=3), 62 (n_layers=2). Inputs must be large enough that the last
    conv still has a pixel to see (``min_size``: 24 px for n_layers=3, 12 for n_layers=2).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1 (3 in VQGAN, 2 in SBER-MoVQGAN), got {n_layers}")
        self.input_nc, self.n_layers = input_nc, n_layers
        lrelu = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        layers = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), lrelu()]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), lrelu()]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=1, padding=1, bias=False),
                   nn.BatchNorm2d(ndf * mult), lrelu(),
                   nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1)]
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    @property
    def receptive_field(self) -> int:
        """Pixels seen by one output logit (70 for n_layers=3)."""
        return patchgan_receptive_field(self.n_layers)

    @property
    def min_size(self) -> int:
        """Smallest input side (px) that still yields a 1×1 logit map."""
        # the two 4×4/s1/p1 convs shrink the side by 1 each, so they need 3 px; each 4×4/s2/p1 conv
        # halves the side (rounding down): 3·2^n_layers
        return 3 * 2 ** self.n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reconstructions are not clamped, so only the shape and dtype are checked, not the range
        check_images(x, channels=self.input_nc, check_range=False, name="discriminator input")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"NLayerDiscriminator(n_layers={self.n_layers}) needs images of at least "
                             f"{self.min_size} px, got {tuple(x.shape[-2:])}; use fewer layers or upsample")
        return self.main(x)
