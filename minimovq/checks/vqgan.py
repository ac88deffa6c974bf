"""Checks for Lesson 3 (VQGAN): ``lpips_layer_distance``, ``patchgan_receptive_field``, ``hinge_d_loss``,
``adaptive_weight``, ``discriminator_loss``."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import discriminator as ref_disc
from .. import losses as ref_losses
from .. import lpips as ref_lpips
from ._core import CheckFailure, call, expect, expect_close, expect_grad, expect_shape, expect_tensor, exercise, grad_of


@exercise("3.1", "lpips_layer_distance", reference=ref_lpips.lpips_layer_distance)
def lpips_layer_distance(fn, ref_fn):
    f0, f1 = torch.randn(3, 16, 5, 4), torch.randn(3, 16, 5, 4)
    w = torch.rand(16)
    d = expect_tensor(call(fn, f0, f1, w), "distance")
    expect_shape(d, (3,), what="distance", hint="one value per image: average over H and W, sum over channels")
    expect_close(fn(f0, f0.clone(), w), torch.zeros(3), what="distance of a feature map to itself", atol=1e-6)
    expect_close(fn(f0, f1, torch.zeros(16)), torch.zeros(3), what="distance with w = 0", atol=1e-6,
                 hint="weight every channel's squared difference by w[c] before summing over channels")
    # each position's feature vector is unit-normalised over channels: scaling it changes nothing
    scale = torch.rand(3, 1, 5, 4) * 10 + 0.1
    expect_close(fn(f0 * scale, f1, w), ref_fn(f0, f1, w), what="distance after rescaling f0 per position",
                 atol=1e-5, hint="normalise over the channel dim only (dim=1, keepdim=True), at every (h, w)")
    expect_close(d, ref_fn(f0, f1, w), what="distance", atol=1e-5,
                 hint="f̂ = f / (sqrt(Σ_c f²) + 1e-10); d = mean_hw Σ_c w_c (f̂0 − f̂1)²")
    f0z = f0.clone()
    f0z[:, :, 0, 0] = 0  # an all-zero feature vector (a dead ReLU region) must not give NaN
    dz = fn(f0z, f1, w)
    expect(bool(torch.isfinite(dz).all()), "an all-zero feature vector gives NaN or inf",
           hint="add eps = 1e-10 to the norm: f / (norm + eps)")
    expect_close(dz, ref_fn(f0z, f1, w), what="distance with an all-zero feature vector", atol=1e-5)
    # LPIPS is a training loss: its gradient reaches both feature maps (so the decoder learns from it)
    a, b = f0.clone().requires_grad_(True), f1.clone().requires_grad_(True)
    d = expect_grad(call(fn, a, b, w), "distance")
    ra, rb = f0.clone().requires_grad_(True), f1.clone().requires_grad_(True)
    for got, want, what in zip(grad_of(d.sum(), [a, b]), grad_of(ref_fn(ra, rb, w).sum(), [ra, rb]),
                               ("d distance / d f0", "d distance / d f1"), strict=True):
        expect(got is not None, f"{what}: no gradient", hint="keep the normalisation inside the graph (no .detach())")
        expect_close(got, want, what=what, atol=1e-5, hint="f̂ = f / (norm + 1e-10), the norm computed from f itself")


@exercise("3.2", "patchgan_receptive_field", reference=ref_disc.patchgan_receptive_field)
def patchgan_receptive_field(fn, ref_fn):
    for n in (1, 2, 3, 4, 5):
        r = call(fn, n)
        expect(isinstance(r, int) or (isinstance(r, torch.Tensor) and r.numel() == 1),
               f"patchgan_receptive_field({n}) returned {type(r).__name__}, expected an int")
        r = int(r)
        expect(r == ref_fn(n), f"patchgan_receptive_field({n}) = {r}, expected {ref_fn(n)}",
               hint="walk from the output back: r = (r − 1)·stride + 4, over n_layers convs with stride 2 "
                    "and then the two final convs with stride 1 (start from r = 1)")


@exercise("3.3", "hinge_d_loss", reference=ref_losses.hinge_d_loss)
def hinge_d_loss(fn, ref_fn):
    real, fake = torch.randn(4, 1, 6, 6) * 2, torch.randn(2, 1, 6, 6) * 2  # D's batch sizes may differ
    loss = expect_tensor(call(fn, real, fake), "loss")
    expect_shape(loss, (), what="loss", hint="return a scalar: mean over each logit map")
    expect_close(fn(torch.full((3,), 2.0), torch.full((3,), -2.0)), torch.tensor(0.0), what="loss when D is "
                 "confidently right (real logits 2, fake logits -2)", hint="relu(1 − D(x)) and relu(1 + D(x̂))")
    expect_close(fn(torch.zeros(3), torch.zeros(3)), torch.tensor(1.0), what="loss at logits 0",
                 hint="½ (mean relu(1 − 0) + mean relu(1 + 0)) = 1")
    expect_close(fn(torch.full((3,), -1.0), torch.zeros(3)), torch.tensor(1.5), what="loss at real logits -1",
                 hint="real images should get logits >= 1: the real term is relu(1 − D(x))")
    expect_close(loss, ref_fn(real, fake), what="loss", atol=1e-5,
                 hint="L_D = 0.5 * (relu(1 − real).mean() + relu(1 + fake).mean()), each mean on its own")
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    out = expect_grad(call(fn, r, f), "the loss",
                      hint="use torch ops (F.relu or clamp_min), no .item(), .detach() or torch.no_grad()")
    rr, rf = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    for got, want, what in zip(grad_of(out, [r, f]), grad_of(ref_fn(rr, rf), [rr, rf]),
                               ("d loss / d real logits", "d loss / d fake logits"), strict=True):
        expect(got is not None, f"{what}: no gradient", hint="use torch ops (F.relu or clamp_min), no .item()")
        expect_close(got, want, what=what, hint="each mean on its own logit map, then ½ (real + fake)")


_LEAVES: list = []  # the other leaves of the latest toy graph: no .grad may appear on them


def _toy_graph(grad_scale: float = 1.0, nll_scale: float = 1.0, seed: int = 0):
    """A last layer L (a conv weight), a reconstruction-like loss and an adversarial-like loss of it.

    The same seed gives the same graph, so the learner's λ and the reference's are comparable. The encoder
    features h and the critic are leaves that require grad too, as the rest of a real model does."""
    gen = torch.Generator().manual_seed(seed)
    last = nn.Parameter(torch.randn(3, 4, 3, 3, generator=gen) * 0.1)
    h = torch.randn(2, 4, 8, 8, generator=gen).requires_grad_(True)
    x_hat = F.conv2d(h, last, padding=1)                         # (2, 3, 8, 8), shared by both losses
    target = torch.randn(2, 3, 8, 8, generator=gen)
    nll = nll_scale * (x_hat - target).abs().mean()
    critic = torch.randn(1, 3, 1, 1, generator=gen).requires_grad_(True)
    g = -(grad_scale * (x_hat * critic).mean())
    _LEAVES[:] = [h, critic]
    return nll, g, last


@exercise("3.4", "adaptive_weight", reference=ref_losses.adaptive_weight)
def adaptive_weight(fn, ref_fn):
    nll, g, last = _toy_graph()
    lam = expect_tensor(call(fn, nll, g, last, reach=tuple(_LEAVES)), "λ")
    expect(lam.numel() == 1, f"λ has shape {tuple(lam.shape)}, expected a scalar tensor")
    expect(not lam.requires_grad, "λ still requires grad",
           hint="detach it: the generator must not backpropagate through the weight itself")
    try:
        (nll + lam * g).backward()  # the training step's own backward must still work afterwards
    except RuntimeError as e:
        raise CheckFailure(f"the real backward pass after your function failed: {e}\n  hint: keep the graph "
                           "with torch.autograd.grad(loss, last_layer, retain_graph=True)") from None
    nll_grad = torch.autograd.grad(*_toy_graph()[0::2])[0].norm()
    expect_close(lam.reshape(()), ref_fn(*_toy_graph()).reshape(()), what="λ", atol=1e-6, rtol=1e-4,
                 hint=f"λ = ‖∇_L nll‖ / (‖∇_L g‖ + delta); here ‖∇_L nll‖ = {nll_grad.item():.4g}")
    expect_close(fn(*_toy_graph(), delta=0.5).reshape(()), ref_fn(*_toy_graph(), delta=0.5).reshape(()),
                 what="λ with delta=0.5", atol=1e-6, rtol=1e-4, hint="add delta to the denominator's norm")
    tiny_g = _toy_graph(grad_scale=1e-9)  # a vanishing adversarial gradient: delta keeps λ finite
    expect_close(fn(*tiny_g).reshape(()), ref_fn(*_toy_graph(grad_scale=1e-9)).reshape(()),
                 what="λ when ‖∇_L g‖ ≈ 0", atol=1e-3, rtol=1e-4,
                 hint="λ = ‖∇_L nll‖ / (‖∇_L g‖ + delta): delta keeps λ from exploding")
    big = fn(*_toy_graph(grad_scale=1e-9, nll_scale=100.0))
    expect(math.isfinite(float(big)) and abs(float(big) - 1e4) < 1e-2,
           f"λ = {float(big):.4g} for a huge ratio, expected the clamp 1e4", hint="torch.clamp(λ, 0.0, 1e4)")
    small = fn(*_toy_graph(grad_scale=1e3))
    expect_close(small.reshape(()), ref_fn(*_toy_graph(grad_scale=1e3)).reshape(()),
                 what="λ with a large adversarial gradient", atol=1e-7, rtol=1e-4,
                 hint="the norm of g's gradient goes in the denominator")


@exercise("3.5", "discriminator_loss", reference=ref_losses.discriminator_loss)
def discriminator_loss(fn, ref_fn):
    """fn(disc, x (B, C, H, W), x_hat (B', C, H, W)) -> scalar hinge loss of D; x_hat detached, two passes."""
    disc = ref_disc.NLayerDiscriminator(input_nc=3, ndf=8, n_layers=2)  # BatchNorm inside, in training mode
    generator = nn.Conv2d(3, 3, 1)  # x_hat comes out of a "generator": no gradient may reach it
    x = torch.randn(4, 3, 16, 16)
    x_hat = generator(torch.randn(4, 3, 16, 16) * 2 + 1.5)  # fakes with other statistics than the reals
    loss = expect_tensor(call(fn, disc, x, x_hat, reach=tuple(generator.parameters())), "loss")
    expect(disc.training, "your function switched the discriminator to eval mode",
           hint="leave the mode alone: D trains on this loss, with BatchNorm in training mode")
    expect(x_hat.requires_grad, "your function detached x_hat in place (x_hat.detach_()), cutting the "
           "generator's own graph", hint="use x_hat.detach(), which returns a new tensor")
    expect_shape(loss, (), what="loss", hint="return a scalar: ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))")
    expect_grad(loss, "the loss", hint="D must learn from it: no .item(), no torch.no_grad() around D")
    want = ref_fn(disc, x, x_hat)
    expect_close(loss, want, what="loss", atol=1e-5, hint="two separate passes, disc(x) and disc(x_hat.detach()): "
                 "one pass on torch.cat([x, x_hat]) lets BatchNorm mix real and fake statistics")
    params = list(disc.parameters())
    got_g, want_g = grad_of(loss, params), grad_of(want, params)
    for (name, _), got, w in zip(disc.named_parameters(), got_g, want_g, strict=True):
        expect(got is not None, f"no gradient reaches the discriminator's {name}",
               hint="run D on both batches with gradients on: no torch.no_grad() around disc(x_hat.detach())")
        expect_close(got, w, what=f"d loss / d disc.{name}", atol=1e-5, rtol=1e-3,
                     hint="L_D = ½ (mean relu(1 − D(x)) + mean relu(1 + D(sg[x̂])))")
    leak = [g for g in grad_of(loss, list(generator.parameters())) if g is not None and g.abs().max() > 0]
    expect(not leak, "the discriminator's loss sends a gradient into the generator",
           hint="detach x_hat before D sees it: disc(x_hat.detach())")
    # batches of different sizes: each mean is over its own logits
    x_small = x_hat[:2]
    expect_close(fn(disc, x, x_small), ref_fn(disc, x, x_small), what="loss with 4 real and 2 fake images",
                 atol=1e-5, hint="½ (mean over the real logits + mean over the fake logits), not one mean of both")
