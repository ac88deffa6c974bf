"""Checks for Lesson 1 (VAE): ``reparameterize``, ``kl_divergence``, ``elbo_loss``."""
from __future__ import annotations

import torch

from .. import vae as ref
from ._core import expect, expect_close, expect_shape, expect_tensor, exercise


@exercise("1.1", "reparameterize", reference=ref.reparameterize)
def reparameterize(fn, ref_fn):
    mu = torch.randn(512, 6)
    logvar = torch.randn(512, 6) * 0.5
    z = fn(mu, logvar)
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
    # Differentiable with respect to mu and logvar.
    mu_g = mu[:4].clone().requires_grad_(True)
    lv_g = logvar[:4].clone().requires_grad_(True)
    fn(mu_g, lv_g).sum().backward()
    expect(mu_g.grad is not None and lv_g.grad is not None and lv_g.grad.abs().sum() > 0,
           "no gradient reached mu or logvar", hint="do not detach, and do not sample with torch.normal(mu, std)")


@exercise("1.2", "kl_divergence", reference=ref.kl_divergence)
def kl_divergence(fn, ref_fn):
    mu = torch.randn(5, 4, 3, 3)
    logvar = torch.randn(5, 4, 3, 3)
    kl = fn(mu, logvar)
    expect_shape(kl, (5,), what="KL", hint="sum over every non-batch dimension: return one value per sample")
    expect_close(kl, ref_fn(mu, logvar), what="KL", atol=1e-4,
                 hint="KL = 0.5 * sum(mu² + exp(logvar) − 1 − logvar)")
    zero = fn(torch.zeros(3, 7), torch.zeros(3, 7))
    expect_close(zero, torch.zeros(3), what="KL(N(0,I) || N(0,I))", atol=1e-6)


@exercise("1.3", "elbo_loss", reference=ref.elbo_loss)
def elbo_loss(fn, ref_fn):
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    x_hat = torch.rand(6, 3, 8, 8) * 2 - 1
    mu, logvar = torch.randn(6, 10), torch.randn(6, 10)
    loss = expect_tensor(fn(x_hat, x, mu, logvar), "loss")
    expect_shape(loss, (), what="loss", hint="return a scalar: the mean over the batch")
    expect_close(loss, ref_fn(x_hat, x, mu, logvar), what="loss (beta=1)", atol=1e-3,
                 hint="per image: sum over pixels of (x_hat − x)², plus beta·KL; then the batch mean")
    expect_close(fn(x_hat, x, mu, logvar, beta=4.0), ref_fn(x_hat, x, mu, logvar, beta=4.0),
                 what="loss (beta=4)", atol=1e-3, hint="beta multiplies the KL term only")
    x2 = torch.cat([x, x])
    expect_close(fn(torch.cat([x_hat, x_hat]), x2, torch.cat([mu, mu]), torch.cat([logvar, logvar])),
                 ref_fn(x_hat, x, mu, logvar), what="loss on a duplicated batch", atol=1e-3,
                 hint="average over the batch (a sum would double)")
