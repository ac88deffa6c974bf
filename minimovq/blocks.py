"""The convolutional autoencoder of VQGAN (Esser 2021), shared by Lesson 3 (VQGAN) and Lesson 4 (MoVQ).

Every block follows taming-transformers' layout (reference facts §1) and its state-dict keys (§2), so the
released checkpoints load by name. The normalization layer is **pluggable**: each block takes a ``norm``
factory ``norm(channels) -> nn.Module``. A plain norm is called as ``norm(h)``; a *conditional* norm (one whose
class sets ``conditional = True``, like MoVQ's ``SpatialNorm``) is called as ``norm(h, z_q)``. The default,
:func:`Normalize`, is taming's ``GroupNorm(32, C, eps=1e-6, affine=True)``.

Shapes: images (B, C_in, H, W); latents (B, z_channels, H/f, W/f) with f = 2 ** (len(ch_mult) - 1).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

NormFactory = Callable[[int], nn.Module]


def Normalize(channels: int) -> nn.GroupNorm:
    """Taming's normalization: GroupNorm with 32 groups, eps 1e-6, learned affine γ/β."""
    if channels % 32:
        raise ValueError(f"GroupNorm(32) needs a channel count that is a multiple of 32, got {channels}; "
                         "choose ch (and ch * ch_mult) as multiples of 32")
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    """swish(x) = x · sigmoid(x) (also called SiLU).

    ``F.silu`` computes it in one kernel and saves only x for the backward pass, where ``x * torch.sigmoid(x)``
    keeps both x and sigmoid(x) alive until then.
    """
    return F.silu(x)


def _norm(layer: nn.Module, h: torch.Tensor, z_q: torch.Tensor | None) -> torch.Tensor:
    """Apply a plain norm as ``layer(h)`` or a conditional one as ``layer(h, z_q)``."""
    if getattr(layer, "conditional", False):
        if z_q is None:
            raise ValueError(f"{type(layer).__name__} is conditioned on the quantized latent: "
                             "call the decoder as decoder(z, z_q=z_q)")
        return layer(h, z_q)
    return layer(h)


class ResnetBlock(nn.Module):
    """Pre-activation residual block (no time embedding).

    h = conv1(swish(norm1(x))); h = conv2(dropout(swish(norm2(h)))); return shortcut(x) + h,
    where shortcut is a 1×1 conv ``nin_shortcut`` when in_channels ≠ out_channels, else the identity.
    (B, in, H, W) -> (B, out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0,
                 norm: NormFactory = Normalize):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        # Registration order fixes the state-dict order: norm1, conv1, norm2, conv2, nin_shortcut.
        self.norm1 = norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor, z_q: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(swish(_norm(self.norm1, x, z_q)))
        h = self.conv2(self.dropout(swish(_norm(self.norm2, h, z_q))))
        shortcut = self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions, with a residual connection.

    Set ``manual = True`` to use the explicit softmax (for the benchmark); by default it calls
    ``F.scaled_dot_product_attention``, which computes the same numbers with less memory.
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, norm: NormFactory = Normalize, manual: bool = False):
        super().__init__()
        self.manual = manual
        self.norm = norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, z_q: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = _norm(self.norm, x, z_q)
        # (B, C, H, W) -> (B, 1, H·W, C): one head whose tokens are the spatial positions
        q, k, v = (rearrange(conv(h), "b c h w -> b 1 (h w) c") for conv in (self.q, self.k, self.v))
        if self.manual:
            # weights = softmax(q kᵀ / sqrt(C)) over the keys: (B, 1, HW, HW)
            weights = torch.softmax((q @ k.transpose(-1, -2)) * int(C) ** -0.5, dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # same equation, fused kernel
        out = rearrange(out, "b 1 (h w) c -> b c h w", h=H, w=W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve H and W: zero-pad right and bottom by 1 (left and top by 0), then a 3×3 conv, stride 2, padding 0.

    (B, C, H, W) -> (B, C, H/2, W/2) for even H, W.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.pad's order is (left, right, top, bottom): the padding is asymmetric on purpose.
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


# Nearest ×2 then a 3×3 kernel, seen from the low-resolution input (one axis): output row 2i takes input rows
# i−1, i with weights (w0, w1 + w2), and output row 2i+1 takes rows i, i+1 with (w0 + w1, w2). A transposed
# convolution with stride 2, padding 1 and the 4-tap kernel (w2, w1 + w2, w0 + w1, w0) computes exactly that.
_NEAREST2X_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))  # (4 taps, 3 kernel rows)


def nearest2x_conv_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The kernel that makes ``conv_transpose2d(x, K, stride=2, padding=1)`` equal
    ``conv2d(nearest_upsample_2x(x), weight, padding=1)``: weight (O, I, 3, 3) -> K (I, O, 4, 4),
    K[i, o] = M · weight[o, i] · Mᵀ with M the (4, 3) matrix ``_NEAREST2X_TAPS``."""
    m = torch.tensor(_NEAREST2X_TAPS, dtype=weight.dtype, device=weight.device)
    with torch.autocast(weight.device.type, enabled=False):  # sum the weights at their own precision
        return torch.einsum("pu,qv,oiuv->iopq", m, m, weight)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour ×2, then a 3×3 conv with padding 1. (B, C, H, W) -> (B, C, 2H, 2W).

    The two steps run as one transposed convolution on the low-resolution input (``nearest2x_conv_kernel``):
    the same numbers, 16 instead of 36 multiply-adds per input pixel and channel pair, and no 4×-size upsampled
    copy kept for the backward pass. ``self.conv`` holds the 3×3 weights (taming's key ``upsample.conv.*``).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv3×3(nearest×2(x)) = conv_transpose(x, K), stride 2, padding 1
        kernel = nearest2x_conv_kernel(self.conv.weight)
        return F.conv_transpose2d(x, kernel, self.conv.bias, stride=2, padding=1)


def _check_config(ch: int, ch_mult: Sequence[int], num_res_blocks: int, resolution: int) -> None:
    if not ch_mult or any(m < 1 for m in ch_mult):
        raise ValueError(f"ch_mult must be a non-empty sequence of positive ints, got {tuple(ch_mult)}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    f = 2 ** (len(ch_mult) - 1)
    if resolution % f:
        raise ValueError(f"resolution {resolution} must be divisible by the downsampling factor {f} "
                         f"(= 2 ** (len(ch_mult) - 1))")


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (AttnBlocks, maybe empty), and a resampler."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    """The bottleneck: block_1 -> attn_1 -> block_2, all at the latent resolution."""

    def __init__(self, channels: int, dropout: float, norm: NormFactory):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, norm)
        self.attn_1 = AttnBlock(channels, norm)
        self.block_2 = ResnetBlock(channels, channels, dropout, norm)

    def forward(self, h: torch.Tensor, z_q: torch.Tensor | None = None) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h, z_q), z_q), z_q)


class Encoder(nn.Module):
    """Image -> latent. (B, in_channels, H, W) -> (B, z_channels · (2 if double_z else 1), H/f, W/f).

    Takes taming's ``ddconfig`` unchanged (``out_ch`` is accepted and ignored). Level i runs ``num_res_blocks``
    ResnetBlocks from ch·in_ch_mult[i] to ch·ch_mult[i] (in_ch_mult = (1,) + ch_mult), each followed by an
    AttnBlock when the level's nominal resolution (from ``resolution``) is in ``attn_resolutions``; every level
    but the last then downsamples.
    """

    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 z_channels: int, resolution: int, in_channels: int = 3, double_z: bool = True,
                 dropout: float = 0.0, out_ch: int | None = None, norm: NormFactory = Normalize):
        super().__init__()
        _check_config(ch, ch_mult, num_res_blocks, resolution)
        self.in_channels = in_channels
        self.downsample_factor = 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        in_ch_mult = (1,) + tuple(ch_mult)
        res = resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(ch_mult):
            level = _Level()
            block_in = ch * in_ch_mult[i]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, ch * mult, dropout, norm))
                block_in = ch * mult
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, norm))
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(block_in, dropout, norm)
        self.norm_out = norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent -> image. (B, z_channels, h, w) -> (B, out_ch, h·f, w·f); the output is not clamped.

    Levels run from the lowest resolution to the highest, each with num_res_blocks + 1 ResnetBlocks (attention
    after each where the nominal resolution is in ``attn_resolutions``) and an upsample on every level but
    level 0. ``self.up[0]`` is the **highest**-resolution level, as in taming's checkpoints.

    With a conditional ``norm`` (MoVQ's SpatialNorm) every norm receives ``z_q``, the quantized latent
    (B, embed_dim, h, w): call ``decoder(z, z_q=z_q)``.
    """

    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 z_channels: int, resolution: int, out_ch: int = 3, dropout: float = 0.0,
                 in_channels: int | None = None, double_z: bool | None = None, norm: NormFactory = Normalize):
        super().__init__()
        _check_config(ch, ch_mult, num_res_blocks, resolution)
        self.z_channels = z_channels
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _Mid(block_in, dropout, norm)
        levels = []
        for i in reversed(range(len(ch_mult))):
            level = _Level()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, ch * ch_mult[i], dropout, norm))
                block_in = ch * ch_mult[i]
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, norm))
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, level)  # so that up[0] is the highest resolution
        self.up = nn.ModuleList(levels)
        self.norm_out = norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, kernel_size=3, stride=1, padding=1)

    @property
    def conditional(self) -> bool:
        """True when the norms are conditioned on the quantized latent (MoVQ)."""
        return bool(getattr(self.norm_out, "conditional", False))

    def forward(self, z: torch.Tensor, z_q: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and z_q is None:
            raise ValueError("this decoder uses SpatialNorm: call it as decoder(z, z_q=z_q), with z_q the "
                             "quantized latent of shape (B, embed_dim, h, w)")
        h = self.mid(self.conv_in(z), z_q)
        for level in reversed(self.up):  # lowest resolution first
            for j, block in enumerate(level.block):
                h = block(h, z_q)
                if len(level.attn):
                    h = level.attn[j](h, z_q)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(_norm(self.norm_out, h, z_q)))
