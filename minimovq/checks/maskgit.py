"""Checks for Lesson 5 (MaskGIT): ``mask_tokens`` (5.1) and ``decode_step`` (5.2).

``cosine_schedule`` and ``select_to_remask`` are library functions (:mod:`minimovq.maskgit`) that the lesson uses.
"""
from __future__ import annotations

import math

import torch

from .. import maskgit as ref
from .. import sampling
from ._core import call, expect, expect_close, expect_shape, exercise


@exercise("5.1", "mask_tokens", reference=ref.mask_tokens)
def mask_tokens(fn, ref_fn):
    K, B, N = 16, 8000, 4
    tokens = torch.randint(0, K, (B, N))
    out = call(fn, tokens, K, generator=torch.Generator().manual_seed(0))
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


def _decode_case(step, steps, unknown, n_start, seed=0, B=None, N=16, K=10):
    """Inputs of one decoding step: rows with ``unknown[b]`` masked positions, logits, a draw, Gumbel noise."""
    gen = torch.Generator().manual_seed(seed)
    B = len(unknown)
    tokens = torch.randint(0, K, (B, N), generator=gen)
    for b, u in enumerate(unknown):
        tokens[b, torch.randperm(N, generator=gen)[:u]] = K  # mask_id = K
    logits = torch.randn(B, N, K, generator=gen) * 2
    sampled = torch.multinomial(logits.softmax(-1).reshape(-1, K), 1, generator=gen).reshape(B, N)
    noise = sampling.gumbel_noise((B, N), generator=gen)
    return dict(tokens=tokens, logits=logits, sampled=sampled, noise=noise, mask_id=K, step=step, steps=steps,
                n_start=n_start)


_DECODE_CASES = [  # (what, step, steps, unknown per row, n_start)
    ("the first step of 8, all 16 positions unknown", 0, 8, [16, 16, 16], 16),
    ("step 2 of 8 (index 1)", 1, 8, [16, 15, 14], 16),
    ("step 4 of 8, rows at different stages (u = 16, 11, 5, 0), n_start as a tensor", 3, 8, [16, 11, 5, 0],
     torch.tensor([16, 16, 16, 16])),
    ("step 7 of 8 with n_start = 3 (γ·n_start < 1)", 6, 8, [3, 2, 1], torch.tensor([3, 3, 3])),
    ("the last step of 8", 7, 8, [16, 1, 4], 16),
    ("a 4-step decode, step 2 (index 1), inpainting rows with n_start = 9", 1, 4, [9, 7], 9),
]


@exercise("5.2", "decode_step", reference=sampling.decode_step)
def decode_step(fn, ref_fn):
    """fn(tokens, logits, sampled, noise, mask_id, step, steps, n_start, choice_temperature=4.5) -> (B, N) long."""
    for what, step, steps, unknown, n_start in _DECODE_CASES:
        case = _decode_case(step, steps, unknown, n_start, seed=step + 10 * steps)
        args = [case[k] for k in ("tokens", "logits", "sampled", "noise", "mask_id", "step", "steps", "n_start")]
        got = call(fn, *args)
        want = ref_fn(*args)
        tokens, K = case["tokens"], case["mask_id"]
        expect_shape(got, tokens.shape, what=f"the new grid ({what})", hint="return a (B, N) grid like tokens")
        expect(got.dtype == torch.long, f"the new grid has dtype {got.dtype}, expected torch.long",
               hint="torch.where / masked_fill on the long tokens keep the dtype")
        known = tokens != K
        expect(not bool((known & (got != tokens) & (got != K)).any()),
               f"{what}: a token known before this step was replaced", hint="take `sampled` only where tokens == mask_id")
        expect(not bool((got[known] == K).any()), f"{what}: a token known before this step was masked again",
               hint="give the known positions confidence +inf, so they are never among the least confident")
        n_got, n_want = (got == K).sum(1).tolist(), (want == K).sum(1).tolist()
        expect(n_got == n_want, f"{what}: rows re-mask {n_got} positions, expected {n_want}",
               hint="n = max(1, min(u − 1, ⌊cos(π/2 · (step+1)/steps) · n_start⌋)) for step < steps − 1, "
                    "0 at the last step and where u = 0 (u: unknown positions before this step)")
        expect(torch.equal(got, want), f"{what}: {int((got != want).sum())} of {got.numel()} positions differ "
               "from the reference (the right number is re-masked, but not the least confident ones)",
               hint="confidence = log_softmax(logits, -1) at the sampled token + "
                    "choice_temperature · (1 − (step+1)/steps) · noise; re-mask the n smallest of each row")
    # the temperature is an argument, and τ = 0 ranks by the log-probability alone
    case = _decode_case(2, 6, [16, 12], 16, seed=5)
    for tau in (0.0, 20.0):
        got = fn(**case, choice_temperature=tau)
        expect_close(got == case["mask_id"], ref_fn(**case, choice_temperature=tau) == case["mask_id"],
                     what=f"the re-masked positions with choice_temperature={tau:g}",
                     hint="scale the noise by choice_temperature · (1 − (step+1)/steps)")
    # the tokens filled in are the sampled ones
    case = _decode_case(0, 2, [16, 16], 16, seed=3)
    got = fn(**case)
    keep = got != case["mask_id"]
    expect(torch.equal(got[keep], case["sampled"][keep]), "a newly filled position does not hold the sampled token",
           hint="the new grid takes `sampled` at the unknown positions")
