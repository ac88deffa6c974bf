"""MoVQ (Zheng et al. 2022, arXiv 2209.09002), as released in SBER-MoVQGAN.

VQGAN's decoder reads the codes once, through ``post_quant_conv(z_q)``. MoVQ **modulates every normalization of
the decoder with the quantized latent itself** (spatially conditional normalization), so the codes re-enter at
every norm of every scale. This follows SBER's code: GroupNorm keeps its affine. The paper's eq. (4),
F = φ_γ(z_q)·(F − μ)/σ + φ_β(z_q), has none.

    SpatialNorm(f, z_q) = GroupNorm(f) · conv_y(z_q↑) + conv_b(z_q↑),   z_q↑ = nearest-upsample(z_q) to f's H×W

Lesson 4 shows what this does and does not do. The decoder stays translation-equivariant on the code grid. Inside
a run of one code z_q is constant, so the modulation is constant too, and MoVQ repeats the same flat patch exactly
as VQGAN does. SpatialNorm acts where codes change, and on what a trained encoder learns to emit. What breaks runs
is more distinct codes: multichannel quantization or a larger K.

The encoder is VQGAN's, unchanged. The second idea of the paper, **multichannel quantization**, is the
quantizer's ``groups=G``: each latent vector splits into G contiguous channel groups quantized with one shared
codebook, so one position carries G indices (capacity K^G per position). The released SBER weights use G=1: they
share the SpatialNorm decoder, not multichannel codes.

    model = MoVQ.from_pretrained("67M")          # SBER-MoVQGAN, downloads movqgan_67M.ckpt (needs internet)
    model = MoVQ.from_config("tiny", groups=4)   # a lesson-sized model with multichannel quantization
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .blocks import NormFactory, Normalize
from .hub import hf_download
from .quantize import nearest_codes, straight_through
from .vqgan import VQGAN

HF_REPO = "ai-forever/MoVQGAN"
RELEASED = ("67M", "102M", "270M")  # names MoVQ.from_pretrained downloads


def _sber(ch: int, num_res_blocks: int) -> dict[str, Any]:
    """A released SBER-MoVQGAN configuration: f=8 (256 px -> 32×32 latent), K=16384, 4-dim codes."""
    return dict(ddconfig=dict(double_z=False, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=ch,
                              ch_mult=(1, 2, 2, 4), num_res_blocks=num_res_blocks, attn_resolutions=(32,),
                              dropout=0.0),
                n_embed=16384, embed_dim=4)


def _lesson(ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, attn: tuple[int, ...], resolution: int,
            n_embed: int, embed_dim: int) -> dict[str, Any]:
    return dict(ddconfig=dict(double_z=False, z_channels=embed_dim, resolution=resolution, in_channels=3,
                              out_ch=3, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
                              attn_resolutions=attn, dropout=0.0),
                n_embed=n_embed, embed_dim=embed_dim)


# Named configurations. The lesson sizes (f=4) use small codes like SBER's, divisible by 4 so that groups=4 works;
# build the VQGAN baseline at equal budget with ``VQGAN(**CONFIGS[name])``.
CONFIGS: dict[str, dict[str, Any]] = {
    "67M": _sber(ch=128, num_res_blocks=2),    # 67,832,495 parameters, 431 state-dict keys
    "102M": _sber(ch=128, num_res_blocks=4),   # 101,614,255 parameters
    "270M": _sber(ch=256, num_res_blocks=2),   # 270,669,103 parameters
    "tiny": _lesson(32, (1, 1, 2), 1, (), 32, n_embed=128, embed_dim=16),      # Lesson 4: quick and cpu, 32 px
    "small": _lesson(64, (1, 2, 2), 1, (8,), 32, n_embed=256, embed_dim=16),   # Lesson 4: gpu profile, 64 px
    "base": _lesson(128, (1, 2, 2), 2, (16,), 64, n_embed=512, embed_dim=16),  # a bigger GPU, 64 px
}


class SpatialNorm(nn.Module):
    """Spatially conditional normalization: f (B, C, H, W), z_q (B, D, h, w) -> (B, C, H, W).

    ``norm_layer`` is GroupNorm(32, C, eps=1e-6) and keeps its own affine γ/β; ``conv_y`` and ``conv_b`` are 1×1
    convs D -> C that turn the quantized vector at each position into a per-pixel scale and shift.
    """

    conditional = True  # the blocks call it as norm(h, z_q)

    def __init__(self, f_channels: int, z_q_channels: int):
        super().__init__()
        self.norm_layer = Normalize(f_channels)
        self.conv_y = nn.Conv2d(z_q_channels, f_channels, kernel_size=1)
        self.conv_b = nn.Conv2d(z_q_channels, f_channels, kernel_size=1)

    def forward(self, f: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        if z_q.ndim != 4 or z_q.shape[0] != f.shape[0] or z_q.shape[1] != self.conv_y.in_channels:
            raise ValueError(f"z_q must have shape ({f.shape[0]}, {self.conv_y.in_channels}, h, w) to match f "
                             f"{tuple(f.shape)}, got {tuple(z_q.shape)}; pass the quantized latent (embed_dim "
                             "channels), not post_quant_conv(z_q)")
        (H, W), (h, w) = f.shape[-2:], z_q.shape[-2:]
        norm_f = self.norm_layer(f)  # (B, C, H, W)
        if (H, W) == (h, w):  # the latent resolution: nothing to upsample
            return torch.addcmul(self.conv_b(z_q), norm_f, self.conv_y(z_q))
        if H % h or W % w:
            # nearest, to f's exact size (not a scale factor), so non-square and odd grids work
            z_q_up = F.interpolate(z_q, size=(H, W), mode="nearest")  # (B, D, H, W)
            # SpatialNorm(f, z_q) = norm(f) · conv_y(z_q↑) + conv_b(z_q↑)
            return torch.addcmul(self.conv_b(z_q_up), norm_f, self.conv_y(z_q_up))
        # Integer factors: nearest upsampling repeats each latent vector over an (H/h)×(W/w) cell, and a 1×1 conv
        # commutes with that (conv_y(z_q↑) = conv_y(z_q)↑). So the scale and shift are computed at the latent
        # resolution and broadcast over the cells: no full-size z_q↑, scale or shift is built or kept for backward.
        scale = rearrange(self.conv_y(z_q), "b c h w -> b c h 1 w 1")
        shift = rearrange(self.conv_b(z_q), "b c h w -> b c h 1 w 1")
        cells = rearrange(norm_f, "b c (h s) (w t) -> b c h s w t", h=h, w=w)  # a view
        # SpatialNorm(f, z_q) = norm(f) · conv_y(z_q)↑ + conv_b(z_q)↑, in one pass
        return rearrange(torch.addcmul(shift, cells, scale), "b c h s w t -> b c (h s) (w t)")


def group_quantize(z: torch.Tensor, codebook: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multichannel quantization: z (B, D, H, W), codebook (K, D/G) -> z_q (B, D, H, W), indices (B, H, W, G).

    Group g holds the contiguous channels [g·D/G, (g+1)·D/G); every group is matched against the same shared
    codebook, so a position carries G indices (K^G combinations). z_q has straight-through gradients,
    z_q = z + sg[e − z]. With groups=1 this is the plain quantizer (indices with a last axis of size 1).
    """
    B, D, H, W = z.shape
    if D % groups or codebook.shape[1] != D // groups:
        raise ValueError(f"with groups={groups}, z's {D} channels must split into groups of codebook width "
                         f"{codebook.shape[1]}: expected D = groups · {codebook.shape[1]}")
    flat = rearrange(z, "b (g d) h w -> (b h w g) d", g=groups)  # (B·H·W·G, D/G), contiguous groups
    indices = nearest_codes(flat, codebook)  # argmin_k ‖z_g − e_k‖², (B·H·W·G,)
    z_q = rearrange(codebook[indices], "(b h w g) d -> b (g d) h w", b=B, h=H, w=W, g=groups)
    return straight_through(z, z_q), rearrange(indices, "(b h w g) -> b h w g", b=B, h=H, w=W, g=groups)


class MoVQ(VQGAN):
    """VQGAN with a SpatialNorm decoder: every decoder norm (ResnetBlock norm1/norm2, the attention ``norm``
    and ``norm_out``) is modulated by ``z_q``; the encoder keeps plain GroupNorm.

    Takes SBER's ``ddconfig``, ``n_embed`` and ``embed_dim`` unchanged and has SBER's exact state-dict keys, so
    the released checkpoints load with ``strict=True``. ``groups=G`` turns on multichannel quantization
    (indices (B, h, w, G); SpatialNorm still receives the re-assembled (B, D, h, w) z_q). Other arguments as
    :class:`~minimovq.vqgan.VQGAN`.
    """

    def __init__(self, ddconfig: dict[str, Any], n_embed: int, embed_dim: int, groups: int = 1,
                 legacy: bool = False, beta: float = 0.25, quantizer: nn.Module | None = None):
        super().__init__(ddconfig, n_embed, embed_dim, legacy=legacy, beta=beta, groups=groups, quantizer=quantizer)

    @staticmethod
    def _decoder_norm(embed_dim: int) -> NormFactory:
        return partial(SpatialNorm, z_q_channels=embed_dim)

    @classmethod
    def _configs(cls) -> dict[str, dict[str, Any]]:
        return CONFIGS

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, h, w) -> x̂ = decoder(post_quant_conv(z_q), z_q=z_q): conv_in takes the post-z_q-conv
        latent, and every SpatialNorm takes ``z_q`` itself. (B, out_ch, h·f, w·f), not clamped."""
        self._check_quant(z_q)
        return self.decoder(self.post_quant_conv(z_q), z_q=z_q)

    @classmethod
    def _fetch_pretrained(cls, name: str) -> str:
        """Download ``movqgan_<name>.ckpt`` from the Hugging Face repo ``ai-forever/MoVQGAN``."""
        if name not in RELEASED:
            raise ValueError(f"SBER released no weights for config {name!r}; the released models are "
                             f"{', '.join(RELEASED)} (or pass checkpoint_path= for your own file)")
        filename = f"movqgan_{name}.ckpt"
        return hf_download(HF_REPO, filename, cls._pretrained_how(name))

    @classmethod
    def _pretrained_how(cls, name: str) -> str:
        filename = f"movqgan_{name}.ckpt"
        return (f"download {filename} from https://huggingface.co/{HF_REPO} (on a machine with internet, e.g. "
                f"Colab) and pass MoVQ.from_pretrained({name!r}, checkpoint_path='path/to/{filename}')")


def from_config(name: str, **overrides: Any) -> MoVQ:
    """``MoVQ.from_config(name, **overrides)``."""
    return MoVQ.from_config(name, **overrides)
