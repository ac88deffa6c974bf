"""Lesson 3 checks reject known-wrong versions (reference and stub behaviour: test_checks_all.py)."""
import pytest
import torch
import torch.nn.functional as F

from minimovq.checks import vqgan as checks
from minimovq.discriminator import patchgan_receptive_field
from minimovq.losses import adaptive_weight, discriminator_loss, hinge_d_loss
from minimovq.lpips import lpips_layer_distance

def _norm(f, eps=1e-10):
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)


WRONG_LPIPS = {
    "no normalisation": lambda f0, f1, w: torch.einsum("bchw,c->bhw", (f0 - f1) ** 2, w).mean((1, 2)),
    "normalised over C,H,W": lambda f0, f1, w: torch.einsum(
        "bchw,c->bhw", (f0 / f0.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                        - f1 / f1.flatten(1).norm(dim=1).view(-1, 1, 1, 1)) ** 2, w).mean((1, 2)),
    "sum over space": lambda f0, f1, w: torch.einsum("bchw,c->bhw", (_norm(f0) - _norm(f1)) ** 2, w).sum((1, 2)),
    "w ignored": lambda f0, f1, w: ((_norm(f0) - _norm(f1)) ** 2).sum(1).mean((1, 2)),
    "abs difference": lambda f0, f1, w: torch.einsum("bchw,c->bhw", (_norm(f0) - _norm(f1)).abs(), w).mean((1, 2)),
    "no eps": lambda f0, f1, w: torch.einsum(
        "bchw,c->bhw", (f0 / f0.norm(dim=1, keepdim=True) - f1 / f1.norm(dim=1, keepdim=True)) ** 2, w).mean((1, 2)),
    "mean over channels": lambda f0, f1, w: (((_norm(f0) - _norm(f1)) ** 2) * w.view(1, -1, 1, 1)).mean((1, 2, 3)),
    "normalises in place": lambda f0, f1, w: torch.einsum(
        "bchw,c->bhw", (f0.div_(f0.norm(dim=1, keepdim=True) + 1e-10) - f1.div_(f1.norm(dim=1, keepdim=True) + 1e-10))
        ** 2, w).mean((1, 2)),
    "normalises without gradient": lambda f0, f1, w: torch.einsum(
        "bchw,c->bhw", (_norm(f0).detach() - _norm(f1).detach()) ** 2, w).mean((1, 2)),
    "keeps the channel dim": lambda f0, f1, w: (((_norm(f0) - _norm(f1)) ** 2) * w.view(1, -1, 1, 1)).mean((2, 3)),
}


@pytest.mark.parametrize("name", WRONG_LPIPS)
def test_lpips_layer_distance_rejects(name):
    with pytest.raises(AssertionError):
        checks.lpips_layer_distance(WRONG_LPIPS[name], strict=True)


def _rf_without_final_convs(n):
    r = 1
    for _ in range(n):
        r = (r - 1) * 2 + 4
    return r


def _rf_forward_order(n):
    r = 1
    for s in [2] * n + [1, 1]:  # walking from the input: wrong order of strides
        r = (r - 1) * s + 4
    return r


WRONG_RF = {
    "always 70": lambda n: 70,
    "no stride-1 convs": _rf_without_final_convs,
    "forward order": _rf_forward_order,
    "kernel 3": lambda n: patchgan_receptive_field(n) - (n + 2),
    "one layer too many": lambda n: patchgan_receptive_field(n + 1),
    "a string": lambda n: str(patchgan_receptive_field(n)),
}


@pytest.mark.parametrize("name", WRONG_RF)
def test_patchgan_receptive_field_rejects(name):
    assert checks.patchgan_receptive_field(WRONG_RF[name], strict=False, quiet=True).__wrapped__ is patchgan_receptive_field
    with pytest.raises(AssertionError):
        checks.patchgan_receptive_field(WRONG_RF[name], strict=True)


WRONG_HINGE = {
    "no ½": lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
    "signs swapped": lambda r, f: 0.5 * (F.relu(1 + r).mean() + F.relu(1 - f).mean()),
    "vanilla (softplus)": lambda r, f: 0.5 * (F.softplus(-r).mean() + F.softplus(f).mean()),
    "no relu": lambda r, f: 0.5 * ((1 - r).mean() + (1 + f).mean()),
    "sums": lambda r, f: 0.5 * (F.relu(1 - r).sum() + F.relu(1 + f).sum()),
    "one joint mean": lambda r, f: 0.5 * (F.relu(1 - r) + F.relu(1 + f)).mean(),
    "margin 0": lambda r, f: 0.5 * (F.relu(-r).mean() + F.relu(f).mean()),
    "detached": lambda r, f: hinge_d_loss(r.detach(), f.detach()),
    "per-image vector": lambda r, f: 0.5 * (F.relu(1 - r).flatten(1).mean(1)[:2] + F.relu(1 + f).flatten(1).mean(1)),
}


@pytest.mark.parametrize("name", WRONG_HINGE)
def test_hinge_d_loss_rejects(name):
    with pytest.raises(AssertionError):
        checks.hinge_d_loss(WRONG_HINGE[name], strict=True)


def _grads(nll, g, last, retain=True):
    gn = torch.autograd.grad(nll, last, retain_graph=True)[0]
    gg = torch.autograd.grad(g, last, retain_graph=retain)[0]
    return gn, gg


def _aw_no_clamp(nll, g, last, delta=1e-4):
    gn, gg = _grads(nll, g, last)
    return (gn.norm() / (gg.norm() + delta)).detach()


def _aw_no_detach(nll, g, last, delta=1e-4):
    gn, gg = torch.autograd.grad(nll, last, retain_graph=True, create_graph=True)[0], \
        torch.autograd.grad(g, last, retain_graph=True, create_graph=True)[0]
    return torch.clamp(gn.norm() / (gg.norm() + delta), 0, 1e4)


def _aw_inverted(nll, g, last, delta=1e-4):
    gn, gg = _grads(nll, g, last)
    return torch.clamp(gg.norm() / (gn.norm() + delta), 0, 1e4).detach()


def _aw_squared(nll, g, last, delta=1e-4):
    gn, gg = _grads(nll, g, last)
    return torch.clamp(gn.pow(2).sum() / (gg.pow(2).sum() + delta), 0, 1e4).detach()


def _aw_no_delta(nll, g, last, delta=1e-4):
    gn, gg = _grads(nll, g, last)
    return torch.clamp(gn.norm() / gg.norm(), 0, 1e4).detach()


def _aw_fixed_delta(nll, g, last, delta=1e-4):
    gn, gg = _grads(nll, g, last)
    return torch.clamp(gn.norm() / (gg.norm() + 1e-4), 0, 1e4).detach()


def _aw_with_disc_weight(nll, g, last, delta=1e-4):
    return adaptive_weight(nll, g, last, delta) * 0.8


def _aw_frees_graph(nll, g, last, delta=1e-4):
    gn = torch.autograd.grad(nll, last, retain_graph=True)[0]
    gg = torch.autograd.grad(g, last)[0]  # frees the shared graph
    return torch.clamp(gn.norm() / (gg.norm() + delta), 0, 1e4).detach()


def _aw_backward(nll, g, last, delta=1e-4):  # reads .grad after .backward(): grads left on every leaf
    nll.backward(retain_graph=True)
    gn = last.grad.clone()
    last.grad = None
    g.backward(retain_graph=True)
    gg = last.grad.clone()
    last.grad = None
    return torch.clamp(gn.norm() / (gg.norm() + delta), 0, 1e4).detach()


def _aw_backward_zeroed(nll, g, last, delta=1e-4):  # zeroes last.grad, but h and the critic keep theirs
    nll.backward(retain_graph=True)
    gn = last.grad.clone()
    last.grad.zero_()
    g.backward(retain_graph=True)
    gg = last.grad.clone()
    last.grad = None
    return torch.clamp(gn.norm() / (gg.norm() + delta), 0, 1e4).detach()


def _aw_python_float(nll, g, last, delta=1e-4):
    return float(adaptive_weight(nll, g, last, delta))


WRONG_AW = {f.__name__: f for f in (_aw_no_clamp, _aw_no_detach, _aw_inverted, _aw_squared, _aw_no_delta,
                                     _aw_fixed_delta, _aw_with_disc_weight, _aw_frees_graph, _aw_python_float,
                                     _aw_backward, _aw_backward_zeroed)}


@pytest.mark.parametrize("name", WRONG_AW)
def test_adaptive_weight_rejects(name):
    with pytest.raises(AssertionError):
        checks.adaptive_weight(WRONG_AW[name], strict=True)


def test_failure_message_names_the_problem(capsys):
    assert checks.hinge_d_loss(WRONG_HINGE["signs swapped"]).__wrapped__ is hinge_d_loss
    out = capsys.readouterr().out
    assert "✗" in out and "Exercise 3.3" in out and "hint" in out
    assert checks.lpips_layer_distance(WRONG_LPIPS["no eps"]).__wrapped__ is lpips_layer_distance
    assert "NaN" in capsys.readouterr().out


def test_references_are_the_package_functions():
    assert checks.lpips_layer_distance.reference is lpips_layer_distance
    assert checks.patchgan_receptive_field.reference is patchgan_receptive_field
    assert checks.hinge_d_loss.reference is hinge_d_loss
    assert checks.adaptive_weight.reference is adaptive_weight
    assert checks.discriminator_loss.reference is discriminator_loss


def test_backward_inside_adaptive_weight_is_named():
    with pytest.raises(AssertionError, match=r"left a \.grad"):
        checks.adaptive_weight(_aw_backward, strict=True)


# ---- discriminator_loss ---------------------------------------------------------------------------------------
def _d_hinge(real, fake):
    return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())


def d_one_batch(disc, x, x_hat):  # one pass over [x; x_hat]: BatchNorm mixes real and fake statistics
    logits = disc(torch.cat([x, x_hat.detach()]))
    return _d_hinge(logits[: len(x)], logits[len(x):])


def d_not_detached(disc, x, x_hat):  # the generator receives the discriminator's gradient
    return _d_hinge(disc(x), disc(x_hat))


def d_no_grad_fake(disc, x, x_hat):  # D never learns from the fakes
    with torch.no_grad():
        fake = disc(x_hat)
    return _d_hinge(disc(x), fake)


def d_signs_swapped(disc, x, x_hat):
    return _d_hinge(disc(x_hat.detach()), disc(x))


def d_joint_mean(disc, x, x_hat):  # one mean over both logit maps
    real, fake = disc(x), disc(x_hat.detach())
    return 0.5 * torch.cat([F.relu(1 - real).flatten(), F.relu(1 + fake).flatten()]).mean() * 2


def d_eval_mode(disc, x, x_hat):  # switches BatchNorm to its running statistics
    disc.eval()
    return _d_hinge(disc(x), disc(x_hat.detach()))


def d_backward_inside(disc, x, x_hat):  # steps are the Trainer's job: leaves .grad on D's parameters
    loss = _d_hinge(disc(x), disc(x_hat.detach()))
    loss.backward(retain_graph=True)
    return loss


def d_detach_in_place(disc, x, x_hat):  # cuts the generator's own graph
    x_hat.detach_()
    return _d_hinge(disc(x), disc(x_hat))


def d_item(disc, x, x_hat):
    return torch.tensor(_d_hinge(disc(x), disc(x_hat.detach())).item())


def d_generator_loss(disc, x, x_hat):  # the generator's hinge instead of D's
    return -disc(x_hat).mean()


WRONG_D = {f.__name__: f for f in (d_one_batch, d_not_detached, d_no_grad_fake, d_signs_swapped, d_joint_mean,
                                    d_eval_mode, d_backward_inside, d_detach_in_place, d_item, d_generator_loss)}


@pytest.mark.parametrize("name", WRONG_D)
def test_discriminator_loss_rejects(name):
    with pytest.raises(AssertionError, match=r"^Exercise 3\.5 \(discriminator_loss\)"):
        checks.discriminator_loss(WRONG_D[name], strict=True)


def test_discriminator_loss_accepts_the_library_hinge():
    def mine(disc, x, x_hat):
        return hinge_d_loss(disc(x), disc(x_hat.detach()))

    assert checks.discriminator_loss(mine, strict=True) is mine
