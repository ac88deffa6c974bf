"""Checks for Lesson 2 (VQ-VAE): ``nearest_codes``, ``quantize``, ``ema_update``, ``perplexity``.

Each is called as ``fn = checks.vqvae.quantize(fn)``; the references live in :mod:`minimovq.quantize`.
"""
from __future__ import annotations

import math

import torch

from minimovq import quantize as ref
from minimovq.checks._core import call, exercise, expect, expect_close, expect_shape, expect_tensor, grad_of

__all__ = ["nearest_codes", "quantize", "ema_update", "perplexity"]


def _expect_same_indices(got, expected: torch.Tensor, what: str, hint: str) -> None:
    expect_shape(got, expected.shape, what=what)
    expect(not got.is_floating_point(), f"{what} should be integer indices (torch.long), got {got.dtype}",
           hint="use .argmin(dim=...), which returns a LongTensor")
    wrong = int((got.long().cpu() != expected.cpu()).sum())
    expect(wrong == 0, f"{what}: {wrong} of {expected.numel()} indices differ from the nearest codes", hint)


@exercise("2.1", "nearest_codes", reference=ref.nearest_codes)
def nearest_codes(fn, ref_fn):
    """fn(z (N, D), codebook (K, D)) -> LongTensor (N,): argmin_k ‖z_i − e_k‖²."""
    z, codebook = torch.randn(64, 4), torch.randn(10, 4) * torch.linspace(0.2, 3.0, 10).unsqueeze(1)
    _expect_same_indices(call(fn, z, codebook), ref_fn(z, codebook), "indices",
                         hint="distances are ‖z‖² + ‖e‖² − 2·z·eᵀ, shape (N, K); take the argmin over K (dim=1)")
    # a long code beats a short one on the dot product but not on the distance
    z, codebook = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [10.0, 0.0]])
    _expect_same_indices(fn(z, codebook), torch.tensor([0]), "index of z=[1, 0] among codes [1, 0] and [10, 0]",
                         hint="the largest dot product is not the nearest code: keep the ‖e‖² term")


@exercise("2.2", "quantize", reference=ref.quantize)
def quantize(fn, ref_fn):
    """fn(z (B, D, H, W), codebook (K, D), beta) -> z_q (B, D, H, W), loss (), indices (B, H, W)."""
    B, D, H, W, K, beta = 2, 4, 3, 5, 8, 0.5
    z0, c0 = torch.randn(B, D, H, W), torch.randn(K, D)
    runs = {}
    for name, f in (("yours", fn), ("ref", ref_fn)):
        z, codebook = z0.clone().requires_grad_(), c0.clone().requires_grad_()
        z_q, loss, idx = call(f, z, codebook, beta=beta)
        runs[name] = z, codebook, z_q, loss, idx
    z, codebook, z_q, loss, idx = runs["yours"]
    _, r_codebook, r_z_q, r_loss, r_idx = runs["ref"]
    expect_shape(z_q, (B, D, H, W), what="z_q")
    _expect_same_indices(idx, r_idx, "indices (B, H, W)",
                         hint="flatten with rearrange(z, 'b d h w -> (b h w) d') and reshape the argmin to (B, H, W)")
    expect_close(z_q, r_z_q, what="z_q", hint="z_q = codebook[indices], rearranged back to (B, D, H, W)")
    expect_shape(loss, (), what="loss", hint="average over every element: F.mse_loss returns a scalar")
    expect_close(loss, r_loss, what="loss",
                 hint="loss = mean((sg[z] − e)²) + beta · mean((z − sg[e])²); its value is (1 + beta)·MSE")
    # gradients of the loss alone: this is where the placement of beta shows
    grads = [torch.autograd.grad(l, [zz, cb], allow_unused=True, retain_graph=True)
             for l, zz, cb in ((loss, z, codebook), (r_loss, runs["ref"][0], r_codebook))]
    expect(grads[0][1] is not None, "the loss gives the codebook no gradient",
           hint="the codebook term ‖sg[z] − e‖² must reach the codebook: detach z there, not e")
    expect_close(grads[0][1], grads[1][1], what="d loss / d codebook",
                 hint="the codebook term has weight 1 and beta goes on the commitment term ‖z − sg[e]‖²")
    expect(grads[0][0] is not None, "the loss gives the encoder output z no gradient",
           hint="the commitment term beta·‖z − sg[e]‖² pulls z towards its code")
    expect_close(grads[0][0], grads[1][0], what="d loss / d z", hint="beta multiplies ‖z − sg[e]‖² only")
    # straight-through: the decoder's gradient reaches z unchanged
    g = torch.randn(B, D, H, W)
    expect(z_q.requires_grad, "z_q carries no gradient back to z",
           hint="use the straight-through estimator z_q = z + (z_q − z).detach()")
    gz, gc = grad_of(z_q, [z, codebook], g)
    expect(gz is not None, "z_q gives z no gradient", hint="z_q = z + (z_q − z).detach()")
    expect_close(gz, g, what="d z_q / d z applied to a gradient",
                 hint="straight-through copies the gradient: z_q = z + (z_q − z).detach()")
    expect(gc is None or float(gc.abs().max()) == 0.0,
           "the decoder's gradient leaks into the codebook through z_q "
           f"(|d z_q / d codebook| up to {0.0 if gc is None else float(gc.abs().max()):.3g})",
           hint="only the codebook loss may train the codebook: z_q = z + (z_q − z).detach() detaches the whole "
                "difference; z_q + (z − z.detach()) keeps z_q's own graph")


@exercise("2.3", "ema_update", reference=ref.ema_update)
def ema_update(fn, ref_fn):
    """fn(cluster_size (K,), embed_sum (K, D), z (N, D), indices (N,), decay, eps) -> (N, m, codebook), pure."""
    K, D = 6, 3
    cluster_size = torch.rand(K) * 3
    cluster_size[-1] = 0.0  # a code never used, and unused in this batch: Laplace smoothing avoids 0 / 0
    embed_sum = torch.randn(K, D)
    embed_sum[-1] = 0.0
    z, indices = torch.randn(40, D), torch.randint(0, K - 2, (40,))
    inputs = (cluster_size, embed_sum, z, indices)
    for kwargs in (dict(decay=0.9, eps=0.1), {}):
        out = call(fn, *inputs, **kwargs)
        expect(isinstance(out, (tuple, list)) and len(out) == 3,
               "ema_update should return (cluster_size, embed_sum, codebook)")
        expected = ref_fn(*inputs, **kwargs)
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "default decay and eps"
        expect_close(out[0], expected[0], what=f"cluster_size ({args})",
                     hint="N ← decay·N + (1 − decay)·counts, counts = torch.bincount(indices, minlength=K)")
        expect_close(out[1], expected[1], what=f"embed_sum ({args})",
                     hint="m ← decay·m + (1 − decay)·Σ_{i: idx=k} z_i  (index_add_ on a fresh zeros tensor)")
        expect_close(out[2], expected[2], what=f"codebook ({args})",
                     hint="e = m / N_s with Laplace smoothing N_s = (N + eps) / (ΣN + K·eps) · ΣN")


@exercise("2.4", "perplexity", reference=ref.perplexity)
def perplexity(fn, ref_fn):
    """fn(indices (any shape), num_codes) -> scalar tensor exp(−Σ p ln p)."""
    def value(indices, num_codes, what):
        out = expect_tensor(call(fn, indices, num_codes), what)
        expect(out.numel() == 1, f"{what} should be a scalar tensor, got shape {tuple(out.shape)}")
        return out.reshape(())

    uniform = value(torch.arange(16).view(2, 2, 4), 16, "perplexity of 16 codes used equally")
    expect_close(uniform, torch.tensor(16.0), what="perplexity of 16 codes used equally",
                 hint="perplexity = exp(entropy): uniform usage of K codes gives K")
    one = value(torch.full((2, 3, 3), 5), 16, "perplexity of a single code")
    expect_close(one, torch.tensor(1.0), what="perplexity when every index is the same code",
                 hint="unused codes have p = 0 and contribute 0·log 0 = 0 (mask them or use torch.special.xlogy)")
    indices = torch.randint(0, 12, (4, 5, 5)) ** 2 % 13  # uneven usage, several codes unused
    expect_close(value(indices, 16, "perplexity"), ref_fn(indices, 16), what="perplexity",
                 hint="p = bincount(indices.flatten(), minlength=num_codes) / N; exp(−Σ p·ln p), natural log")
    p = torch.tensor([0.5, 0.25, 0.25])
    expect(math.isclose(float(value(torch.tensor([0, 0, 1, 2]), 3, "perplexity")),
                        math.exp(-float((p * p.log()).sum())), rel_tol=1e-4),
           "perplexity of usage (1/2, 1/4, 1/4) should be 2^1.5 ≈ 2.83",
           hint="use the natural log inside exp(·), or log2 inside 2**(·), not a mix of the two")
