"""Checks for Lesson 5 (MaskGIT): ``cosine_schedule``, ``mask_tokens``, ``select_to_remask``."""
from __future__ import annotations

import math

import torch

from .. import maskgit as ref
from .. import sampling
from ._core import expect, expect_close, expect_shape, expect_tensor, exercise


@exercise("5.1", "cosine_schedule", reference=ref.cosine_schedule)
def cosine_schedule(fn, ref_fn):
    r = torch.tensor([0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 1.0])
    g = expect_tensor(fn(r), "cosine_schedule(r)")
    expect_shape(g, r.shape, what="cosine_schedule(r)", hint="work elementwise: one ratio per r")
    expect_close(g, ref_fn(r), what="cosine_schedule(r)", atol=1e-5,
                 hint="γ(r) = cos(π·r/2): 1 at r = 0 (everything masked), 0 at r = 1 (nothing masked)")
    grid = torch.rand(3, 4)
    expect_close(fn(grid), ref_fn(grid), what="cosine_schedule on a (3, 4) tensor", atol=1e-5,
                 hint="use torch.cos(math.pi / 2 * r), no reductions or loops over a fixed length")


@exercise("5.2", "mask_tokens", reference=ref.mask_tokens)
def mask_tokens(fn, ref_fn):
    K, B, N = 16, 8000, 4
    tokens = torch.randint(0, K, (B, N))
    out = fn(tokens, K, generator=torch.Generator().manual_seed(0))
    expect(isinstance(out, tuple) and len(out) == 2, "mask_tokens should return (masked_tokens, mask)")
    masked, mask = out
    expect_shape(masked, tokens.shape, what="masked_tokens")
    expect_shape(mask, tokens.shape, what="mask", hint="mask is (B, N), one flag per position")
    expect(mask.dtype == torch.bool, f"mask has dtype {mask.dtype}, expected torch.bool",
           hint="build it with a comparison, e.g. ranks < n[:, None]")
    expect(masked.dtype == tokens.dtype, f"masked_tokens has dtype {masked.dtype}, expected {tokens.dtype}")
    expect(torch.equal(masked, torch.where(mask, torch.full_like(tokens, K), tokens)),
           "masked_tokens should hold mask_id exactly where mask is True and the original tokens elsewhere",
           hint="tokens.masked_fill(mask, mask_id), without changing tokens in place")
    counts = mask.sum(1)
    expect(int(counts.min()) >= 1, f"{int((counts == 0).sum())} of {B} rows have no masked position",
           hint="mask max(1, ceil(γ(r)·N)) positions: at least one, so every sample trains the model")
    expect(counts.float().std() > 0.5, "every row masks the same number of positions",
           hint="draw one r per sample: r = torch.rand(B, generator=generator)")
    # P(count <= k) = P(γ(r)·N <= k) = 1 − (2/π)·acos(k/N) for r ~ U(0, 1) and the ceil
    for k in range(1, N + 1):
        want = 1 - 2 / math.pi * math.acos(min(1.0, k / N))
        got = (counts <= k).float().mean().item()
        expect(abs(got - want) < 0.03,
               f"{got:.1%} of rows mask at most {k} of {N} positions; the cosine schedule gives {want:.1%}",
               hint="n = max(1, ceil(cos(π·r/2)·N)) with r ~ U(0, 1): ceil, not floor or round")
    # positions are uniform: each of the N positions is masked equally often
    freq = mask.float().mean(0)
    expect((freq - freq.mean()).abs().max() < 0.04,
           f"positions are masked with frequencies {[round(f, 2) for f in freq.tolist()]}, expected all equal",
           hint="choose the positions at random, e.g. the n smallest of torch.rand(B, N, generator=generator)")
    # every random number comes from the generator
    torch.manual_seed(1)
    a = fn(tokens[:64], K, generator=torch.Generator().manual_seed(7))[1]
    torch.manual_seed(2)
    b = fn(tokens[:64], K, generator=torch.Generator().manual_seed(7))[1]
    expect(torch.equal(a, b), "two calls with equally seeded generators gave different masks",
           hint="pass generator=generator to every torch.rand / torch.randperm call")
    c = fn(tokens[:64], K, generator=torch.Generator().manual_seed(8))[1]
    expect(not torch.equal(a, c), "different generators gave the same mask", hint="draw r and the positions at random")
    fn(tokens[:4], K)  # generator=None falls back to the global generator
    # (B, N, G) tokens: a masked position is masked in all of its G channels
    many = torch.randint(0, K, (32, N, 2))
    try:
        m3, k3 = fn(many, K, generator=torch.Generator().manual_seed(0))
    except Exception:  # (B, N, G) support is optional
        return
    if tuple(k3.shape) == (32, N):
        expect(torch.equal((m3 == K).all(-1), k3), "with (B, N, G) tokens, a masked position should hold "
               "mask_id in all G channels", hint="masked_fill(mask[..., None], mask_id)")


@exercise("5.3", "select_to_remask", reference=sampling.select_to_remask)
def select_to_remask(fn, ref_fn):
    conf = torch.randn(6, 10)
    for n in (0, 1, 4, 9):
        got = fn(conf, n)
        expect_shape(got, conf.shape, what=f"select_to_remask(confidence, n={n})")
        expect(got.dtype == torch.bool, f"the result has dtype {got.dtype}, expected torch.bool")
        expect_close(got, ref_fn(conf, n), what=f"positions chosen with n={n}",
                     hint="True at the n LEAST confident positions of each row (the ones to mask again)")
    n_row = torch.tensor([0, 1, 3, 5, 7, 9])
    got = fn(conf, n_row)
    expect_shape(got, conf.shape, what="select_to_remask with a per-row n")
    expect(got.sum(1).tolist() == n_row.tolist(),
           f"rows selected {got.sum(1).tolist()} positions, expected n = {n_row.tolist()}",
           hint="n may be a LongTensor (B,): compare each row's ranks with its own n[:, None]")
    expect_close(got, ref_fn(conf, n_row), what="positions chosen with a per-row n",
                 hint="rank each row (argsort of argsort) and keep ranks < n[:, None]")
    # fixed tokens carry +inf confidence and are never chosen while finite ones remain
    conf_inf = conf.clone()
    conf_inf[:, ::2] = float("inf")
    got = fn(conf_inf, torch.tensor([1, 2, 3, 4, 5, 5]))
    expect(not got[:, ::2].any(), "a position with confidence +inf (an already fixed token) was chosen",
           hint="sort in ascending order: the smallest confidences go first")
