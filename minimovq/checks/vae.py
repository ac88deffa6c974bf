"""Checks for Lesson 1 (VAE): ``reparameterize``, ``kl_divergence``, ``elbo_loss``.

Each tests the values against :mod:`minimovq.vae`, that the inputs are left unchanged, and that the result carries
the gradient training needs (a loss built from ``.item()``, ``torch.tensor([...])`` or under ``torch.no_grad()``
has the right value and no gradient).
"""
from __future__ import annotations

import torch

from .. import vae as ref
from ._core import call, expect, expect_close, expect_grad, expect_shape, expect_tensor, exercise, grad_of


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


@exercise("1.1", "reparameterize", reference=ref.reparameterize)
def reparameterize(fn, ref_fn):
    mu = torch.randn(512, 6)
    logvar = torch.randn(512, 6) * 0.5
    z = call(fn, mu, logvar)
    expect_shape(z, mu.shape, what="z", hint="z must have mu's shape: draw eps with torch.randn_like(mu)")
    # Same seed -> the same eps: compare against the reference draw.
    torch.manual_seed(1)
    z1 = fn(mu, logvar)
    torch.manual_seed(1)
    z_ref = ref_fn(mu, logvar)
    expect_close(z1, z_ref, what="z with a fixed seed", atol=1e-4,
                 hint="z = mu + exp(0.5 * logvar) * eps, with eps = torch.randn_like(mu) (std, not variance)")
    # Fresh noise on every call.
    expect(not torch.allclose(fn(mu, logvar), fn(mu, logvar)), "two calls returned the same z",
           hint="draw a fresh eps inside the function on every call")
    # Statistics: with logvar = log 4 the std is 2.
    m = torch.full((20000, 1), 3.0)
    lv = torch.full((20000, 1), float(torch.log(torch.tensor(4.0))))
    s = fn(m, lv)
    expect(abs(s.mean().item() - 3.0) < 0.1 and abs(s.std().item() - 2.0) < 0.1,
           f"samples with mu=3, logvar=log 4 have mean {s.mean().item():.3f} and std {s.std().item():.3f}, "
           "expected 3 and 2", hint="sigma = exp(0.5 * logvar)")
    # Differentiable with respect to mu and logvar: dz/dmu = 1, dz/dlogvar = 0.5·sigma·eps.
    mu_g, lv_g = _leaves(mu[:4], logvar[:4])
    torch.manual_seed(2)
    z = expect_grad(call(fn, mu_g, lv_g), "z",
                    hint="do not detach, and do not sample with torch.normal(mu, std): the noise must be separate")
    torch.manual_seed(2)
    eps = torch.randn_like(mu_g)
    g_mu, g_lv = grad_of(z.sum(), [mu_g, lv_g])
    expect(g_mu is not None and g_lv is not None, "no gradient reached mu or logvar",
           hint="z = mu + exp(0.5 * logvar) * eps: both inputs must stay in the graph")
    expect_close(g_mu, torch.ones_like(mu_g), what="dz/dmu", hint="z = mu + sigma·eps: dz/dmu = 1")
    expect_close(g_lv, 0.5 * torch.exp(0.5 * lv_g.detach()) * eps, what="dz/dlogvar", atol=1e-4,
                 hint="sigma = exp(0.5 · logvar), so dz/dlogvar = 0.5 · sigma · eps")


@exercise("1.2", "kl_divergence", reference=ref.kl_divergence)
def kl_divergence(fn, ref_fn):
    mu = torch.randn(5, 4, 3, 3)
    logvar = torch.randn(5, 4, 3, 3)
    kl = call(fn, mu, logvar)
    expect_shape(kl, (5,), what="KL", hint="sum over every non-batch dimension: return one value per sample")
    expect_close(kl, ref_fn(mu, logvar), what="KL", atol=1e-4,
                 hint="KL = 0.5 * sum(mu² + exp(logvar) − 1 − logvar)")
    zero = fn(torch.zeros(3, 7), torch.zeros(3, 7))
    expect_close(zero, torch.zeros(3), what="KL(N(0,I) || N(0,I))", atol=1e-6)
    one = fn(mu[:1], logvar[:1])  # a batch of one keeps its batch axis
    expect_shape(one, (1,), what="KL of a batch of one", hint="flatten(1).sum(1): keep dim 0, sum the rest")
    # The KL must train the encoder: its gradient reaches mu and logvar.
    mu_g, lv_g = _leaves(mu, logvar)
    kl = expect_grad(call(fn, mu_g, lv_g), "KL")
    got = grad_of(kl.sum(), [mu_g, lv_g])
    mu_r, lv_r = _leaves(mu, logvar)
    want = grad_of(ref_fn(mu_r, lv_r).sum(), [mu_r, lv_r])
    for g, w, what in zip(got, want, ("dKL/dmu", "dKL/dlogvar"), strict=True):
        expect(g is not None, f"{what}: no gradient", hint="use torch ops on mu and logvar, no .item()")
        expect_close(g, w, what=what, atol=1e-4, hint="dKL/dmu = mu, dKL/dlogvar = 0.5 (exp(logvar) − 1)")


@exercise("1.3", "elbo_loss", reference=ref.elbo_loss)
def elbo_loss(fn, ref_fn):
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    x_hat = torch.rand(6, 3, 8, 8) * 2 - 1
    mu, logvar = torch.randn(6, 10), torch.randn(6, 10)
    loss = expect_tensor(call(fn, x_hat, x, mu, logvar), "loss")
    expect_shape(loss, (), what="loss", hint="return a scalar: the mean over the batch")
    expect_close(loss, ref_fn(x_hat, x, mu, logvar), what="loss (beta=1)", atol=1e-3,
                 hint="per image: sum over pixels of (x_hat − x)², plus beta·KL; then the batch mean")
    expect_close(fn(x_hat, x, mu, logvar, beta=4.0), ref_fn(x_hat, x, mu, logvar, beta=4.0),
                 what="loss (beta=4)", atol=1e-3, hint="beta multiplies the KL term only")
    x2 = torch.cat([x, x])
    expect_close(fn(torch.cat([x_hat, x_hat]), x2, torch.cat([mu, mu]), torch.cat([logvar, logvar])),
                 ref_fn(x_hat, x, mu, logvar), what="loss on a duplicated batch", atol=1e-3,
                 hint="average over the batch (a sum would double)")
    # The loss trains the decoder (through x_hat) and the encoder (through mu, logvar), not the data.
    xh_g, mu_g, lv_g = _leaves(x_hat, mu, logvar)
    loss = expect_grad(call(fn, xh_g, x, mu_g, lv_g, beta=2.0), "loss")
    got = grad_of(loss, [xh_g, mu_g, lv_g])
    r = _leaves(x_hat, mu, logvar)
    want = grad_of(ref_fn(r[0], x, r[1], r[2], beta=2.0), r)
    for g, w, what in zip(got, want, ("dloss/dx_hat", "dloss/dmu", "dloss/dlogvar"), strict=True):
        expect(g is not None, f"{what}: no gradient reaches it",
               hint="both terms must stay in the graph: the KL trains the encoder")
        expect_close(g, w, what=what, atol=1e-4, hint="loss = mean_b [Σ_pixels (x_hat − x)² + beta·KL_b]")
