"""Lesson 1's checks reject known-wrong implementations (reference and stub behaviour: test_checks_all.py)."""
import pytest
import torch

from minimovq import vae as ref
from minimovq.checks import vae as checks


# ---- reparameterize ------------------------------------------------------------------------------------------
def rep_variance(mu, logvar):  # exp(logvar) is the variance, not the std
    return mu + torch.exp(logvar) * torch.randn_like(mu)


def rep_no_half(mu, logvar):
    return mu + logvar * torch.randn_like(mu)


def rep_fixed_noise(mu, logvar):  # the same eps on every call
    g = torch.Generator().manual_seed(0)
    return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)


def rep_torch_normal(mu, logvar):  # samples without a path for the gradient
    return torch.normal(mu, torch.exp(0.5 * logvar))


def rep_detached(mu, logvar):
    return (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()


def rep_in_place(mu, logvar):  # writes into the caller's mu
    return mu.add_(torch.exp(0.5 * logvar) * torch.randn_like(mu))


def rep_rand(mu, logvar):  # uniform noise
    return mu + torch.exp(0.5 * logvar) * torch.rand_like(mu)


# ---- kl_divergence --------------------------------------------------------------------------------------------
def _kl_terms(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_item(mu, logvar):  # right values, built from Python floats: no gradient
    return torch.tensor([_kl_terms(m, lv).sum().item() for m, lv in zip(mu, logvar, strict=True)])


def kl_tensor_of_list(mu, logvar):
    return torch.tensor([float(_kl_terms(m, lv).sum()) for m, lv in zip(mu, logvar, strict=True)])


def kl_no_grad(mu, logvar):
    with torch.no_grad():
        return _kl_terms(mu, logvar).flatten(1).sum(1)


def kl_all_dims(mu, logvar):  # sums over the batch too
    return _kl_terms(mu, logvar).sum()


def kl_wrong_axis(mu, logvar):  # sums over dim 1 only
    return _kl_terms(mu, logvar).sum(1)


def kl_mean(mu, logvar):  # mean instead of sum over the latent dims
    return _kl_terms(mu, logvar).flatten(1).mean(1)


def kl_no_half(mu, logvar):
    return (2 * _kl_terms(mu, logvar)).flatten(1).sum(1)


def kl_squeezed(mu, logvar):  # loses the batch axis for a batch of one
    return _kl_terms(mu, logvar).flatten(1).sum(1).squeeze()


def kl_in_place(mu, logvar):
    return 0.5 * (mu.pow_(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


# ---- elbo_loss ------------------------------------------------------------------------------------------------
def elbo_item(x_hat, x, mu, logvar, beta=1.0):
    return torch.tensor(ref.elbo_loss(x_hat, x, mu, logvar, beta).item())


def elbo_tensor_of_list(x_hat, x, mu, logvar, beta=1.0):
    rec = (x_hat - x).pow(2).flatten(1).sum(1)
    per = [float(r + beta * k) for r, k in zip(rec, ref.kl_divergence(mu, logvar), strict=True)]
    return torch.tensor(per).mean()


def elbo_no_grad_kl(x_hat, x, mu, logvar, beta=1.0):  # the KL is computed without a graph
    rec = (x_hat - x).pow(2).flatten(1).sum(1)
    with torch.no_grad():
        kl = ref.kl_divergence(mu, logvar)
    return (rec + beta * kl).mean()


def elbo_mse(x_hat, x, mu, logvar, beta=1.0):  # mean over pixels
    return torch.nn.functional.mse_loss(x_hat, x) + beta * ref.kl_divergence(mu, logvar).mean()


def elbo_batch_sum(x_hat, x, mu, logvar, beta=1.0):
    return ((x_hat - x).pow(2).flatten(1).sum(1) + beta * ref.kl_divergence(mu, logvar)).sum()


def elbo_beta_on_rec(x_hat, x, mu, logvar, beta=1.0):
    return (beta * (x_hat - x).pow(2).flatten(1).sum(1) + ref.kl_divergence(mu, logvar)).mean()


def elbo_plus_sign_swapped(x_hat, x, mu, logvar, beta=1.0):  # maximises the KL
    return ((x_hat - x).pow(2).flatten(1).sum(1) - beta * ref.kl_divergence(mu, logvar)).mean()


def elbo_in_place(x_hat, x, mu, logvar, beta=1.0):
    rec = x_hat.sub_(x).pow(2).flatten(1).sum(1)
    return (rec + beta * ref.kl_divergence(mu, logvar)).mean()


WRONG = {
    checks.reparameterize: [rep_variance, rep_no_half, rep_fixed_noise, rep_torch_normal, rep_detached, rep_in_place,
                            rep_rand],
    checks.kl_divergence: [kl_item, kl_tensor_of_list, kl_no_grad, kl_all_dims, kl_wrong_axis, kl_mean, kl_no_half,
                           kl_squeezed, kl_in_place],
    checks.elbo_loss: [elbo_item, elbo_tensor_of_list, elbo_no_grad_kl, elbo_mse, elbo_batch_sum, elbo_beta_on_rec,
                       elbo_plus_sign_swapped, elbo_in_place],
}


@pytest.mark.parametrize("check, wrong", [(c, w) for c, ws in WRONG.items() for w in ws], ids=lambda f: f.__name__)
def test_wrong_implementations_are_rejected(check, wrong):
    with pytest.raises(AssertionError, match=rf"^Exercise {check.exercise_number} \({check.exercise_name}\)"):
        check(wrong, strict=True)


@pytest.mark.parametrize("check, wrong, words", [
    (checks.kl_divergence, kl_item, "carries no gradient"),
    (checks.elbo_loss, elbo_no_grad_kl, "dloss/dmu"),
    (checks.kl_divergence, kl_in_place, "in place"),
    (checks.reparameterize, rep_torch_normal, "dz/dmu"),
], ids=lambda f: getattr(f, "__name__", str(f)))
def test_the_message_names_the_mistake(check, wrong, words):
    with pytest.raises(AssertionError, match=words):
        check(wrong, strict=True)


def test_references_are_the_package_functions():
    assert checks.reparameterize.reference is ref.reparameterize
    assert checks.kl_divergence.reference is ref.kl_divergence
    assert checks.elbo_loss.reference is ref.elbo_loss
