"""MoVQ (Zheng et al. 2022, arXiv 2209.09002), as released in SBER-MoVQGAN.

VQGAN's decoder sees only ``post_quant_conv(quant)``: where neighbouring positions share a code, it receives the
same vector and tends to paint the same patch again — the repeated, blocky artifacts of smooth regions. MoVQ
**modulates every normalization of the decoder with the quantized latent itself** (spatially conditional
normalization), so the decoder knows *where* each code sits and can vary the output inside one code's area:

    SpatialNorm(f, zq) = GroupNorm(f) · conv_y(zq↑) + conv_b(zq↑),   zq↑ = nearest-upsample(zq) to f's H×W

The encoder is VQGAN's, unchanged. The second idea of the paper, **multichannel quantization**, is the
quantizer's ``groups=G``: each latent vector splits into G contiguous channel groups quantized with one shared
codebook, so one position carries G indices (capacity K^G per position). The released weights use G=1.

    model = MoVQ.from_pretrained("67M")          # SBER-MoVQGAN, downloads movqgan_67M.ckpt (needs internet)
    model = MoVQ.from_config("tiny", groups=4)   # a lesson-sized model with multichannel quantization
"""
from __future__ import annotations

import os
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .blocks import NormFactory, Normalize
from .checkpoint import CheckpointError
from .quantize import nearest_codes, straight_through
from .vqgan import VQGAN, load_official_weights

HF_REPO = "ai-forever/MoVQGAN"
RELEASED = ("67M", "102M", "270M")


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
    """Spatially conditional normalization: f (B, C, H, W), zq (B, D, h, w) -> (B, C, H, W).

    ``norm_layer`` is GroupNorm(32, C, eps=1e-6) and keeps its own affine γ/β; ``conv_y`` and ``conv_b`` are 1×1
    convs D -> C that turn the quantized vector at each position into a per-pixel scale and shift.
    """

    conditional = True  # the blocks call it as norm(h, zq)

    def __init__(self, f_channels: int, zq_channels: int):
        super().__init__()
        self.norm_layer = Normalize(f_channels)
        self.conv_y = nn.Conv2d(zq_channels, f_channels, kernel_size=1)
        self.conv_b = nn.Conv2d(zq_channels, f_channels, kernel_size=1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        if zq.ndim != 4 or zq.shape[0] != f.shape[0] or zq.shape[1] != self.conv_y.in_channels:
            raise ValueError(f"zq must have shape ({f.shape[0]}, {self.conv_y.in_channels}, h, w) to match f "
                             f"{tuple(f.shape)}, got {tuple(zq.shape)}; pass the quantized latent (embed_dim "
                             "channels), not post_quant_conv(quant)")
        # nearest, to f's exact size (not a scale factor), so non-square and odd grids work
        zq_up = F.interpolate(zq, size=f.shape[-2:], mode="nearest")  # (B, D, H, W)
        # SpatialNorm(f, zq) = norm(f) · conv_y(zq↑) + conv_b(zq↑)
        return self.norm_layer(f) * self.conv_y(zq_up) + self.conv_b(zq_up)


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
    and ``norm_out``) is modulated by ``quant``; the encoder keeps plain GroupNorm.

    Takes SBER's ``ddconfig``, ``n_embed`` and ``embed_dim`` unchanged and has SBER's exact state-dict keys, so
    the released checkpoints load with ``strict=True``. ``groups=G`` turns on multichannel quantization
    (indices (B, h, w, G); SpatialNorm still receives the re-assembled (B, D, h, w) quant). Other arguments as
    :class:`~minimovq.vqgan.VQGAN`.
    """

    def __init__(self, ddconfig: dict[str, Any], n_embed: int, embed_dim: int, groups: int = 1,
                 legacy: bool = False, beta: float = 0.25, quantizer: nn.Module | None = None):
        super().__init__(ddconfig, n_embed, embed_dim, legacy=legacy, beta=beta, groups=groups, quantizer=quantizer)

    @staticmethod
    def _decoder_norm(embed_dim: int) -> NormFactory:
        return partial(SpatialNorm, zq_channels=embed_dim)

    @classmethod
    def _configs(cls) -> dict[str, dict[str, Any]]:
        return CONFIGS

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        """quant (B, D, h, w) -> x̂ = decoder(post_quant_conv(quant), zq=quant): conv_in takes the post-quant-conv
        latent, and every SpatialNorm takes ``quant`` itself. (B, out_ch, h·f, w·f), not clamped."""
        self._check_quant(quant)
        return self.decoder(self.post_quant_conv(quant), zq=quant)

    @classmethod
    def from_pretrained(cls, name: str = "67M", checkpoint_path: str | os.PathLike | None = None,
                        **overrides: Any) -> "MoVQ":
        """The released SBER-MoVQGAN ``name`` ("67M", "102M" or "270M").

        With no ``checkpoint_path`` it downloads ``movqgan_<name>.ckpt`` from the Hugging Face repo
        ``ai-forever/MoVQGAN`` (needs ``pip install huggingface_hub`` and internet); with a path it loads that
        file. Either way the file is read with ``weights_only=True``, ``{"state_dict": ...}`` is unwrapped,
        ``loss.*`` and weight-EMA (``model_ema.*``) entries are dropped, and the rest loads strictly.
        The model is returned in eval mode, with ``legacy=True`` (the official loss convention)."""
        if name not in RELEASED:
            raise ValueError(f"unknown SBER-MoVQGAN model {name!r}; expected one of {', '.join(RELEASED)}")
        filename = f"movqgan_{name}.ckpt"
        how = (f"download {filename} from https://huggingface.co/{HF_REPO} (on a machine with internet, e.g. "
               f"Colab) and pass MoVQ.from_pretrained({name!r}, checkpoint_path='path/to/{filename}')")
        if checkpoint_path is None:
            checkpoint_path = _download(filename, how)
        model = cls(**{**cls._config(name), "legacy": True, **overrides})
        load_official_weights(model, checkpoint_path, hint=how)
        return model.eval()


def _download(filename: str, how: str) -> str:
    """Fetch ``filename`` from the Hugging Face repo (cached by huggingface_hub); a clear error offline."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(f"huggingface_hub is not installed (pip install huggingface_hub, or "
                              f"pip install 'minimovq[hub]'); or {how}") from None
    try:
        return hf_hub_download(repo_id=HF_REPO, filename=filename)
    except Exception as e:  # offline, proxy, rate limit, ...
        raise CheckpointError(f"could not download {filename} from {HF_REPO} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else 'no details'}). You may be offline: "
                              f"{how}") from e


def smooth_regions(x: torch.Tensor, f: int, threshold: float = 0.15) -> torch.Tensor:
    """Pixels of x (B, C, H, W) in [-1, 1] whose neighbourhood (a (2f+1)² window) holds no edge or texture:
    every neighbouring pixel step stays below ``threshold``. Returns a bool mask (B, 1, H, W)."""
    x = x.float()
    step = torch.zeros_like(x[:, :1])  # (B, 1, H, W): the largest step to the right or below, over channels
    step[..., :, :-1] = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1, keepdim=True)
    step[..., :-1, :] = torch.maximum(step[..., :-1, :], (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1, keepdim=True))
    return F.max_pool2d(step, 2 * f + 1, stride=1, padding=f) < threshold


@torch.no_grad()
def grid_artifact(x: torch.Tensor, x_hat: torch.Tensor, f: int, threshold: float = 0.15) -> dict[str, Any]:
    """How much of the reconstruction error in smooth regions follows the latent grid (cells of f×f pixels).

    x, x_hat: (B, C, H, W) in [-1, 1], H and W multiples of f. Returns a dict with
      * ``phase``: (f, f), the mean |x̂ − x| in smooth regions at each position *inside* a latent cell. Error
        unrelated to the grid gives a flat map; repeated, blocky patches give a bowl (large at the cell borders).
      * ``score``: std / mean of ``phase`` — 0 when the error ignores the grid.
      * ``blockiness``: the mean step of x̂ across cell borders over its mean step inside cells, in smooth
        regions, divided by the same ratio for x. 1 = no seams at the code borders; > 1 = blocky.
      * ``smooth_fraction``: the share of pixels counted as smooth.
    """
    mask = smooth_regions(x, f, threshold).float()  # (B, 1, H, W)
    err = (x_hat.float() - x.float()).abs().mean(1, keepdim=True)  # (B, 1, H, W)
    fold = "b 1 (h i) (w j) -> i j (b h w)"  # position (i, j) inside each f×f cell
    phase = (rearrange(err * mask, fold, i=f, j=f).sum(-1)
             / rearrange(mask, fold, i=f, j=f).sum(-1).clamp_min(1))  # (f, f)

    def steps(img: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Sums of horizontal steps |img[j+1] − img[j]| over smooth pixel pairs: (across borders, count, inside, count)."""
        step = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(1, keepdim=True)  # (B, 1, H, W-1)
        pair = m[..., :, 1:] * m[..., :, :-1]
        border = (torch.arange(1, img.shape[-1], device=img.device) % f == 0).float()  # col j -> j+1 crosses
        return ((step * pair * border).sum(), (pair * border).sum(),
                (step * pair * (1 - border)).sum(), (pair * (1 - border)).sum())

    def seams(img: torch.Tensor) -> torch.Tensor:
        """Mean step across cell borders / mean step inside cells, both axes pooled (1e-3: below one 8-bit level)."""
        h = steps(img, mask)
        v = steps(img.transpose(-1, -2), mask.transpose(-1, -2))
        across = (h[0] + v[0]) / (h[1] + v[1]).clamp_min(1)
        inside = (h[2] + v[2]) / (h[3] + v[3]).clamp_min(1)
        return across.clamp_min(1e-3) / inside.clamp_min(1e-3)

    blockiness = seams(x_hat.float()) / seams(x.float())
    return {"phase": phase.cpu(), "score": float(phase.std() / phase.mean().clamp_min(1e-8)),
            "blockiness": float(blockiness), "smooth_fraction": float(mask.mean())}


def from_config(name: str, **overrides: Any) -> MoVQ:
    """``MoVQ.from_config(name, **overrides)``."""
    return MoVQ.from_config(name, **overrides)
