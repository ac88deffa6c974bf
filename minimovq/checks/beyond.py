"""Checks for Lesson 6 (beyond the VQ codebook): ``fsq_quantize`` and ``rotate_to``.

Each is called as ``fn = checks.beyond.fsq_quantize(fn)``; the references live in :mod:`minimovq.fsq` and
:mod:`minimovq.rotation`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minimovq import fsq as fsq_ref
from minimovq import rotation as rotation_ref
from minimovq.checks._core import exercise, expect, expect_close, expect_shape, expect_tensor

__all__ = ["fsq_quantize", "rotate_to"]


def _grad(out: torch.Tensor, inputs: list[torch.Tensor], g: torch.Tensor, what: str, hint: str):
    expect(out.requires_grad, f"{what} carries no gradient back to its input", hint)
    return torch.autograd.grad(out, inputs, g, allow_unused=True)


@exercise("6.1", "fsq_quantize", reference=fsq_ref.fsq_quantize)
def fsq_quantize(fn, ref_fn):
    """fn(z (..., d) channel-last, levels (d ints)) -> ẑ (..., d): round_ste(bound(z)) / (L // 2)."""
    levels = [8, 5, 6, 3]  # no L = 4: there the atanh variant's gradient is 4e-4 off the paper's, near ε's 1e-3
    z0 = torch.randn(6, 5, 4) * 1.5
    z0[0, 0] = 0.0  # the centre: where the half-step offset and the shift show
    z = z0.clone().requires_grad_()
    out = expect_tensor(fn(z, levels), "ẑ")
    expect(torch.equal(z.detach(), z0), "fsq_quantize modified z in place", hint="build new tensors; no add_ or clamp_")
    expect_shape(out, z0.shape, what=f"ẑ for z of shape {tuple(z0.shape)} and levels {levels}",
                 hint="the quantizer works channel by channel on the last axis and keeps the shape")
    ref = ref_fn(z0, levels)
    half_width = torch.tensor(levels) // 2
    on_grid = (out.detach().double() * half_width).sub((out.detach().double() * half_width).round()).abs().max()
    expect(on_grid < 1e-4, f"ẑ · (L // 2) should be integers (the grid points), but it is off by up to {on_grid:.3g}",
           hint="round bound(z) (torch.round), then divide by half_width = L // 2, not by half_l")
    per_level = {L: int(out.detach()[..., i].unique().numel()) for i, L in enumerate(levels)}
    wide = torch.linspace(-8, 8, 401).unsqueeze(1).expand(-1, 2)  # sweeps every level of L = 4 and L = 5
    counts = [int(expect_tensor(fn(wide, [4, 5]), "ẑ").detach()[:, i].unique().numel()) for i in range(2)]
    expect(counts == [4, 5], f"over z in [−8, 8], levels [4, 5] give {counts} distinct values per channel "
           "(expected [4, 5])",
           hint="an even L has no level at 0: offset = 0.5 for even L (else 0), bound = tanh(z + shift)·half_l − offset")
    expect_close(out, ref, what="ẑ", hint=f"bound(z) = tanh(z + shift)·half_l − offset with half_l = (L − 1)(1 − "
                 f"1e-3)/2, offset = 0.5 for even L, shift = tan(offset / half_l); then round and divide by L // 2. "
                 f"Distinct values per channel: {per_level}")
    g = torch.randn_like(z0)
    (gz,) = _grad(out, [z], g, "ẑ", hint="round with straight-through: x + (torch.round(x) − x).detach()")
    expect(gz is not None and gz.abs().sum() > 0, "ẑ gives z no gradient",
           hint="torch.round has zero gradient: use the straight-through round x + (round(x) − x).detach()")
    zr = z0.clone().requires_grad_()
    (gr,) = torch.autograd.grad(ref_fn(zr, levels), [zr], g)
    expect_close(gz, gr, what="dẑ/dz applied to a gradient",
                 hint="the gradient is that of bound(z) / (L // 2): d/dz tanh(z + shift)·half_l / (L // 2), with "
                      "half_l = (L − 1)(1 − ε)/2 and ε = 1e-3 (did you leave out ε?)")


@exercise("6.2", "rotate_to", reference=rotation_ref.rotate_to)
def rotate_to(fn, ref_fn):
    """fn(e (N, D), q (N, D)) -> value q, gradient to e λRᵀg (R = I − 2rrᵀ + 2q̂êᵀ, λ = ‖q‖/‖e‖), none to q."""
    N, D = 7, 5
    e0, q0 = torch.randn(N, D), torch.randn(N, D) * 2
    q0[0] = 3.0 * e0[0]  # same direction: R = I, the gradient is λ·g
    e, q = e0.clone().requires_grad_(), q0.clone().requires_grad_()
    out = expect_tensor(fn(e, q), "the output")
    expect(torch.equal(e.detach(), e0) and torch.equal(q.detach(), q0), "rotate_to modified e or q in place")
    expect_shape(out, (N, D), what="the output")
    expect_close(out, q0, what="the forward value", atol=1e-4,
                 hint="λ R e = ‖q‖ q̂ = q: the forward value must be the code q")
    g = torch.randn(N, D)
    ge, gq = _grad(out, [e, q], g, "the output",
                   hint="build the output from e (λ R e with R and λ detached), not from q.detach() alone")
    expect(gq is None or gq.abs().max() < 1e-6, "the code q receives a gradient through the output",
           hint="detach q (and everything computed from it: q̂, λ, r): the codebook learns from its own loss")
    expect(ge is not None, "e receives no gradient", hint="the output must be a function of e: λ R e")
    # the expected gradient, written out with the explicit D×D matrix, in float64
    e64, q64, g64 = e0.double(), q0.double(), g.double()
    e_hat, q_hat = F.normalize(e64, dim=1), F.normalize(q64, dim=1)
    r = F.normalize(e_hat + q_hat, dim=1)
    R = torch.eye(D, dtype=torch.float64) - 2 * r[:, :, None] * r[:, None, :] + 2 * q_hat[:, :, None] * e_hat[:, None, :]
    lam = (q64.norm(dim=1) / e64.norm(dim=1))[:, None]
    straight = torch.allclose(ge.double(), g64, atol=1e-4)
    expect(not straight, "the gradient to e equals g: that is the straight-through estimator",
           hint="the gradient must be rotated and scaled: output = λ·R·e with R and λ computed under no_grad")
    expect_close(ge[:1], (lam * g64)[:1], what="gradient to e when q = 3e (same direction, R = I)",
                 hint="with e and q aligned R is the identity, so the gradient is λ·g, λ = ‖q‖ / ‖e‖, a constant: "
                      "compute R and λ from detached e and q, or extra gradient terms appear")
    not_t = lam * torch.einsum("nij,nj->ni", R, g64)
    if not torch.allclose(ge.double(), lam * torch.einsum("nji,nj->ni", R, g64), atol=1e-4, rtol=1e-3):
        expect(not torch.allclose(ge.double(), not_t, atol=1e-4, rtol=1e-3),
               "the gradient to e is λ·R·g, it should be λ·Rᵀ·g",
               hint="the output is λ·R·e (R applied to e as a column vector: R @ e, i.e. e @ R.T for rows)")
    expect_close(ge, lam * torch.einsum("nji,nj->ni", R, g64), what="gradient to e", atol=1e-4, rtol=1e-3,
                 hint="λ·Rᵀ·g with R = I − 2rrᵀ + 2q̂êᵀ, r = (ê + q̂)/‖ê + q̂‖, λ = ‖q‖/‖e‖, all computed from "
                      "detached e and q (if R or λ depend on e with gradients, extra terms appear)")
