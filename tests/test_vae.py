"""Lesson 1: the VAE model, its losses, its checks (reference passes, wrong versions fail), and bad input."""
import pytest
import torch

from minimovq import vae
from minimovq.checks import vae as checks
from minimovq.profiles import get_profile
from minimovq.validate import check_images


def test_shapes_and_sampling():
    m = vae.VAE(image_size=16, width=8, latent_dim=4)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    x_hat, mu, logvar = m(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (3, 4)
    assert m.sample(5).shape == (5, 3, 16, 16)


def test_reparameterize_gradients_flow():
    mu = torch.zeros(2, 3, requires_grad=True)
    lv = torch.zeros(2, 3, requires_grad=True)
    vae.reparameterize(mu, lv).pow(2).sum().backward()
    assert mu.grad.abs().sum() > 0 and lv.grad.abs().sum() > 0


def test_kl_closed_form_matches_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    mu, lv = torch.randn(4, 5), torch.randn(4, 5)
    ref = kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(0, 1)).sum(1)
    assert torch.allclose(vae.kl_divergence(mu, lv), ref, atol=1e-5)


def test_overfit_one_batch(overfit):
    torch.manual_seed(0)
    m = vae.VAE(image_size=16, width=16, latent_dim=16)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    rec = overfit(lambda: vae.vae_loss(m, x, beta=0.01)["rec"], m.parameters(), steps=150, lr=3e-3)
    assert rec[-1] < 0.1 * rec[0]


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(3, 16, 16), "add a batch dimension"),
    (torch.zeros(2, 1, 16, 16), "grayscale"),
    (torch.zeros(2, 16, 16, 3), "channels-last"),
    (torch.zeros(2, 3, 8, 8), "16x16"),
    (torch.full((2, 3, 16, 16), 200.0), r"\[0, 255\]"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "float"),
])
def test_bad_input_names_expected_shape(bad, match):
    m = vae.VAE(image_size=16, width=8, latent_dim=4)
    with pytest.raises(ValueError, match=match):
        m(bad)


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of 8"):
        vae.VAE(image_size=20)
    with pytest.raises(ValueError, match="must be one of"):
        get_profile("fast")
    with pytest.raises(ValueError, match="multiples of 8"):
        check_images(torch.zeros(1, 3, 12, 12), multiple_of=8)


WRONG_REPARAM = {
    "std is exp(logvar)": lambda mu, lv: mu + lv.exp() * torch.randn_like(mu),
    "no noise": lambda mu, lv: mu,
    "variance instead of std": lambda mu, lv: mu + lv.exp() * torch.randn_like(mu),
    "fixed eps": lambda mu, lv: mu + (0.5 * lv).exp() * torch.ones_like(mu),
    "detached": lambda mu, lv: (mu + (0.5 * lv).exp() * torch.randn_like(mu)).detach(),
    "wrong shape eps": lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape[-1]),
}
WRONG_KL = {
    "sum to scalar": lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(),
    "mean over dims": lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).flatten(1).mean(1),
    "missing half": lambda mu, lv: (mu ** 2 + lv.exp() - 1 - lv).flatten(1).sum(1),
    "sign flipped logvar": lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 + lv).flatten(1).sum(1),
    "only last dim": lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(-1),
}
WRONG_ELBO = {
    "mean over pixels": lambda xh, x, mu, lv, beta=1.0: ((xh - x) ** 2).mean() + beta * vae.kl_divergence(mu, lv).mean(),
    "beta on reconstruction": lambda xh, x, mu, lv, beta=1.0: (beta * ((xh - x) ** 2).flatten(1).sum(1) + vae.kl_divergence(mu, lv)).mean(),
    "batch sum": lambda xh, x, mu, lv, beta=1.0: (((xh - x) ** 2).flatten(1).sum(1) + beta * vae.kl_divergence(mu, lv)).sum(),
    "no KL": lambda xh, x, mu, lv, beta=1.0: ((xh - x) ** 2).flatten(1).sum(1).mean(),
    "L1": lambda xh, x, mu, lv, beta=1.0: ((xh - x).abs().flatten(1).sum(1) + beta * vae.kl_divergence(mu, lv)).mean(),
}


@pytest.mark.parametrize("check,wrong", [(checks.reparameterize, f) for f in WRONG_REPARAM.values()]
                         + [(checks.kl_divergence, f) for f in WRONG_KL.values()]
                         + [(checks.elbo_loss, f) for f in WRONG_ELBO.values()])
def test_checks_reject_wrong_versions(check, wrong):
    with pytest.raises(AssertionError):
        check(wrong, strict=True)


def test_check_references_are_the_package_functions():
    # reference passes / stub falls back, for every check: tests/test_checks_all.py
    assert checks.reparameterize.reference is vae.reparameterize
    assert checks.kl_divergence.reference is vae.kl_divergence
    assert checks.elbo_loss.reference is vae.elbo_loss


def test_gaussian_bottleneck_is_a_vae_inside_the_vqvae():
    """Training samples z = μ + σε and returns the KL in nats per image; eval decodes μ; no indices."""
    import math

    from minimovq.vae import GaussianBottleneck, kl_divergence
    from minimovq.vqvae import VQVAE

    torch.manual_seed(0)
    q = GaussianBottleneck(8)
    z_e = torch.randn(4, 8, 3, 3, requires_grad=True)
    z, kl, indices = q(z_e)
    mu, logvar = q.to_stats(z_e).chunk(2, dim=1)
    assert z.shape == z_e.shape and indices is None
    assert torch.allclose(kl, kl_divergence(mu, logvar).mean())
    assert not torch.allclose(z, mu)                                   # a sample in training
    kl.backward()
    assert z_e.grad.abs().sum() > 0                                    # the rate trains the encoder
    q.eval()
    assert torch.equal(q(z_e)[0], mu)                                  # the mean in eval
    model = VQVAE(hidden=16, res_hidden=8, num_res_layers=1, embed_dim=8, quantizer=GaussianBottleneck(8)).eval()
    out = model(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert out.x_hat.shape == (2, 3, 16, 16) and math.isfinite(out.vq_loss.item())


def test_rate_controller_moves_beta_towards_the_target():
    from minimovq.vae import RateController

    c = RateController(target_nats=100.0, beta=1.0, lr=0.1)
    assert c.update(200.0) > 1.0                                       # too many nats: the KL must cost more
    b = c.beta
    assert c.update(50.0) < b                                          # too few nats: the KL costs less
    b = c.beta
    assert c.update(100.0) == pytest.approx(b)                         # on target: unchanged
    assert RateController(1.0, beta=1.0, lr=100.0, max_beta=5.0).update(1e6) == pytest.approx(5.0)
    assert RateController(1.0, beta=2.0).update(float("nan")) == 2.0   # a diverged step leaves β alone
    with pytest.raises(ValueError, match="target_nats"):
        RateController(0.0)
