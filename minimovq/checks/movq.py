"""Checks for Lesson 4 (MoVQ): ``SpatialNorm`` (an ``nn.Module`` class) and ``group_quantize``."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import movq as ref
from ..quantize import quantize as plain_quantize
from ._core import CheckFailure, call, expect, expect_close, expect_shape, expect_tensor, exercise, grad_of

_FORMULA = "norm_layer(f) * conv_y(zq_up) + conv_b(zq_up), zq_up = F.interpolate(zq, size=f.shape[-2:], mode='nearest')"


def _randomize(module: nn.Module) -> None:
    """Give every parameter a non-trivial value, so a missing γ/β or a swapped conv shows in the output."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.ndim == 1 else 0.0) * torch.rand_like(p))


@exercise("4.1", "SpatialNorm", reference=ref.SpatialNorm)
def SpatialNorm(cls, ref_cls):
    expect(isinstance(cls, type) and issubclass(cls, nn.Module), "SpatialNorm should be an nn.Module class",
           hint="pass the class itself: checks.movq.SpatialNorm(SpatialNorm)")
    C, D = 64, 4
    mine, theirs = cls(C, D), ref_cls(C, D)
    for name in ("norm_layer", "conv_y", "conv_b"):
        expect(isinstance(getattr(mine, name, None), nn.Module), f"SpatialNorm({C}, {D}) has no submodule {name!r}",
               hint="name the submodules norm_layer, conv_y and conv_b so the official weights load by name")
    norm = mine.norm_layer
    expect(isinstance(norm, nn.GroupNorm) and norm.num_groups == 32 and norm.affine and norm.eps == 1e-6,
           f"norm_layer is {norm!r}, expected GroupNorm(32, {C}, eps=1e-06, affine=True)",
           hint="nn.GroupNorm(num_groups=32, num_channels=f_channels, eps=1e-6, affine=True): it keeps its own γ/β")
    for name in ("conv_y", "conv_b"):
        conv = getattr(mine, name)
        expect(isinstance(conv, nn.Conv2d) and conv.in_channels == D and conv.out_channels == C
               and conv.kernel_size == (1, 1) and conv.bias is not None,
               f"{name} is {conv!r}, expected Conv2d({D}, {C}, kernel_size=(1, 1)) with bias",
               hint="conv_y and conv_b are 1×1 convs from zq_channels to f_channels")

    # Load the reference's (randomised) weights into the learner's module by name.
    _randomize(theirs)
    try:
        mine.load_state_dict(theirs.state_dict(), strict=True)
    except RuntimeError as e:
        raise CheckFailure("the reference weights do not load into your module by name: "
                           + str(e).split("\n\t", 1)[-1].replace("\n\t", "; ")
                           + "\n  hint: submodules norm_layer (GroupNorm, affine), conv_y, conv_b and nothing else") from None

    for f_shape, zq_shape, what in (((2, C, 8, 8), (2, D, 4, 4), "square grid"),
                                    ((2, C, 8, 6), (2, D, 2, 3), "non-square grid (H×4, W×2)"),
                                    ((1, C, 5, 7), (1, D, 5, 7), "zq already at f's size")):
        f, zq = torch.randn(f_shape) * 2 + 0.5, torch.randn(zq_shape)
        with torch.no_grad():
            try:
                out = call(mine, f, zq)
            except RuntimeError as e:
                raise CheckFailure(f"on a {what} (f {f_shape}, zq {zq_shape}) your module raised: "
                                   f"{str(e).splitlines()[0]}\n  hint: upsample with F.interpolate(zq, "
                                   "size=f.shape[-2:], mode='nearest'), not a single scale factor") from None
            expect_shape(out, f_shape, what=f"output on a {what}", hint="the output has f's shape")
            expect_close(out, theirs(f, zq), what=f"output on a {what}", atol=1e-4, hint=_FORMULA)

    # Gradients reach f, zq and the modulation convs.
    f, zq = torch.randn(2, C, 4, 4, requires_grad=True), torch.randn(2, D, 2, 2, requires_grad=True)
    out = call(mine, f, zq, reach=tuple(mine.parameters()))
    expect(out.requires_grad, "the output carries no gradient", hint="no .detach() and no torch.no_grad() inside")
    gf, gzq, gy = grad_of(out.square().sum(), [f, zq, mine.conv_y.weight])
    expect(gf is not None and gzq is not None and gzq.abs().sum() > 0 and gy is not None,
           "no gradient reached f, zq or conv_y", hint="do not detach zq: the decoder learns through the modulation")


@exercise("4.2", "group_quantize", reference=ref.group_quantize)
def group_quantize(fn, ref_fn):
    B, D, H, W, K = 2, 8, 3, 5, 16
    z = torch.randn(B, D, H, W)

    # With one group it is the plain quantizer.
    codebook = torch.randn(K, D)
    out = call(fn, z, codebook, 1)
    expect(isinstance(out, tuple) and len(out) == 2, "return a tuple (z_q, indices)")
    z_q, idx = out
    z_q_ref, _, idx_ref = plain_quantize(z, codebook)
    expect_shape(idx, (B, H, W, 1), what="indices (groups=1)", hint="keep the group axis, of size 1: (B, H, W, groups)")
    expect(not idx.is_floating_point(), f"indices have dtype {idx.dtype}, expected an integer tensor")
    expect_close(idx.long().squeeze(-1) == idx_ref, torch.ones_like(idx_ref, dtype=torch.bool),
                 what="indices (groups=1) against the plain quantizer",
                 hint="the nearest code: argmin over k of ‖z − e_k‖² (torch.cdist or Σz² + Σe² − 2 z·eᵀ)")
    expect_close(z_q, z_q_ref, what="z_q (groups=1) against the plain quantizer")

    for groups in (4, 2):
        codebook = torch.randn(K, D // groups)
        z_q, idx = fn(z, codebook, groups)
        z_q_ref, idx_ref = ref_fn(z, codebook, groups)
        expect_shape(z_q, (B, D, H, W), what=f"z_q (groups={groups})", hint="z_q has z's shape (B, D, H, W)")
        expect_shape(idx, (B, H, W, groups), what=f"indices (groups={groups})",
                     hint="one index per position and group: (B, H, W, groups)")
        expect_close(idx.long() == idx_ref, torch.ones_like(idx_ref, dtype=torch.bool),
                     what=f"indices (groups={groups})",
                     hint="group g holds the contiguous channels [g·D/G, (g+1)·D/G): "
                          "rearrange(z, 'b (g d) h w -> (b h w g) d', g=G), not '(d g)'")
        expect_close(z_q, z_q_ref, what=f"z_q (groups={groups})",
                     hint="put each group's nearest code back in its own channels")

    # Straight-through: dL/dz = dL/dz_q, and the codebook gets no gradient through z_q.
    z = torch.randn(B, D, H, W, requires_grad=True)
    codebook = torch.randn(K, D // 4, requires_grad=True)
    z_q, _ = call(fn, z, codebook, 4)
    upstream = torch.randn(B, D, H, W)
    expect(expect_tensor(z_q, "z_q").requires_grad, "z_q does not require grad: no gradient can reach z",
           hint="straight-through: z_q = z + (e - z).detach(), not e.detach() alone")
    gz, gc = grad_of(z_q, [z, codebook], upstream)
    expect(gz is not None, "no gradient reached z", hint="straight-through: z_q = z + (e - z).detach()")
    expect_close(gz, upstream, what="dL/dz (straight-through gradient)",
                 hint="straight-through: z_q = z + (e - z).detach(), so the gradient passes to z unchanged")
    expect(gc is None or gc.abs().sum() == 0,
           "the codebook received a gradient through z_q",
           hint="z_q = z + (e - z).detach(): the codebook is trained by the codebook loss, not through z_q")
