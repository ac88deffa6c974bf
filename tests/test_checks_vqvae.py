"""Lesson 2's checks reject known-wrong implementations (reference and stub behaviour: test_checks_all.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minimovq import quantize as ref
from minimovq.checks import vqvae as checks

# ---- nearest_codes ------------------------------------------------------------------------------------------
def nc_argmax(z, codebook):
    return torch.cdist(z, codebook).argmax(1)


def nc_dot_product(z, codebook):  # forgets ‖e‖²
    return (z @ codebook.t()).argmax(1)


def nc_wrong_dim(z, codebook):
    return torch.cdist(z, codebook).argmin(0)


def nc_float(z, codebook):
    return torch.cdist(z, codebook).argmin(1).float()


def nc_cdist(z, codebook):  # a correct alternative
    return torch.cdist(z, codebook).argmin(1)


# ---- quantize -----------------------------------------------------------------------------------------------
def _lookup(z, codebook):
    B, D, H, W = z.shape
    flat = rearrange(z, "b d h w -> (b h w) d")
    idx = torch.cdist(flat, codebook).argmin(1)
    z_q = rearrange(codebook[idx], "(b h w) d -> b d h w", b=B, h=H, w=W)
    return z_q, idx.view(B, H, W)


def q_beta_swapped(z, codebook, beta=0.25):  # taming's legacy placement
    z_q, idx = _lookup(z, codebook)
    loss = F.mse_loss(z_q.detach(), z) + beta * F.mse_loss(z_q, z.detach())
    return z + (z_q - z).detach(), loss, idx


def q_no_straight_through(z, codebook, beta=0.25):
    z_q, idx = _lookup(z, codebook)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())
    return z_q, loss, idx


def q_no_stop_gradient(z, codebook, beta=0.25):
    z_q, idx = _lookup(z, codebook)
    loss = (1 + beta) * F.mse_loss(z_q, z)
    return z + (z_q - z).detach(), loss, idx


def q_fixed_beta(z, codebook, beta=0.25):
    z_q, idx = _lookup(z, codebook)
    loss = F.mse_loss(z_q, z.detach()) + 0.25 * F.mse_loss(z, z_q.detach())
    return z + (z_q - z).detach(), loss, idx


def q_no_permute(z, codebook, beta=0.25):  # flattens channels-first memory as if it were (N, D)
    B, D, H, W = z.shape
    flat = z.reshape(-1, D)
    idx = torch.cdist(flat, codebook).argmin(1)
    z_q = codebook[idx].reshape(B, D, H, W)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())
    return z + (z_q - z).detach(), loss, idx.view(B, H, W)


def q_leaks_into_codebook(z, codebook, beta=0.25):  # straight-through written backwards
    z_q, idx = _lookup(z, codebook)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())
    return z_q + (z - z.detach()), loss, idx


def q_in_place_codebook_loss(z, codebook, beta=0.25):  # normalises the caller's z in place first
    z.data.div_(z.data.norm(dim=1, keepdim=True) + 1e-6)
    z_q, idx = _lookup(z, codebook)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())
    return z + (z_q - z).detach(), loss, idx


def q_sum_not_mean(z, codebook, beta=0.25):
    z_q, idx = _lookup(z, codebook)
    loss = ((z_q - z.detach()) ** 2).sum() + beta * ((z - z_q.detach()) ** 2).sum()
    return z + (z_q - z).detach(), loss, idx


def q_backward_inside(z, codebook, beta=0.25):  # calls backward itself: leaves .grad on the codebook
    z_q, idx = _lookup(z, codebook)
    loss = F.mse_loss(z_q, z.detach()) + beta * F.mse_loss(z, z_q.detach())
    loss.backward(retain_graph=True)
    return z + (z_q - z).detach(), loss, idx


def q_correct_alternative(z, codebook, beta=0.25):
    z_q, idx = _lookup(z, codebook)
    loss = torch.mean((z.detach() - z_q) ** 2) + beta * torch.mean((z - z_q.detach()) ** 2)
    return z + (z_q - z).detach(), loss, idx


# ---- ema_update ---------------------------------------------------------------------------------------------
def _stats(cluster_size, embed_sum, z, indices):
    onehot = F.one_hot(indices, cluster_size.shape[0]).to(z.dtype)
    return onehot.sum(0), onehot.t() @ z


def ema_in_place(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    counts, sums = _stats(cluster_size, embed_sum, z, indices)
    cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + len(cluster_size) * eps) * n
    return cluster_size, embed_sum, embed_sum / smoothed[:, None]


def ema_in_place_one_hot_free(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    cluster_size *= decay
    cluster_size.index_add_(0, indices, torch.full_like(indices, 1, dtype=cluster_size.dtype), alpha=1 - decay)
    embed_sum *= decay
    embed_sum.index_add_(0, indices, z, alpha=1 - decay)
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + len(cluster_size) * eps) * n
    return cluster_size.clone(), embed_sum.clone(), embed_sum / smoothed[:, None]


def ema_no_smoothing(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    counts, sums = _stats(cluster_size, embed_sum, z, indices)
    N = decay * cluster_size + (1 - decay) * counts
    m = decay * embed_sum + (1 - decay) * sums
    return N, m, m / N[:, None]


def ema_decay_swapped(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    counts, sums = _stats(cluster_size, embed_sum, z, indices)
    N = (1 - decay) * cluster_size + decay * counts
    m = (1 - decay) * embed_sum + decay * sums
    n = N.sum()
    return N, m, m / ((N + eps) / (n + len(N) * eps) * n)[:, None]


def ema_mean_not_sum(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    counts, sums = _stats(cluster_size, embed_sum, z, indices)
    N = decay * cluster_size + (1 - decay) * counts
    m = decay * embed_sum + (1 - decay) * sums / counts.clamp_min(1)[:, None]
    n = N.sum()
    return N, m, m / ((N + eps) / (n + len(N) * eps) * n)[:, None]


def ema_one_hot_correct(cluster_size, embed_sum, z, indices, decay=0.99, eps=1e-5):
    counts, sums = _stats(cluster_size, embed_sum, z, indices)
    N = decay * cluster_size + (1 - decay) * counts
    m = decay * embed_sum + (1 - decay) * sums
    n = N.sum()
    return N, m, m / ((N + eps) / (n + len(N) * eps) * n)[:, None]


# ---- perplexity ---------------------------------------------------------------------------------------------
def _probs(indices, num_codes):
    return torch.bincount(indices.flatten(), minlength=num_codes).float() / indices.numel()


def ppl_log2(indices, num_codes):
    p = _probs(indices, num_codes)
    return torch.exp(-torch.special.xlogy(p, p).sum() / math.log(2))


def ppl_entropy_only(indices, num_codes):
    p = _probs(indices, num_codes)
    return -torch.special.xlogy(p, p).sum()


def ppl_nan_for_unused(indices, num_codes):
    p = _probs(indices, num_codes)
    return torch.exp(-(p * torch.log(p)).sum())


def ppl_eps_inside_log(indices, num_codes):  # taming's formula; ~1e-10 off, accepted
    p = _probs(indices, num_codes)
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


def ppl_used_count(indices, num_codes):
    return torch.tensor(float(indices.unique().numel()))


@pytest.mark.parametrize("check, wrong", [
    (checks.nearest_codes, nc_argmax), (checks.nearest_codes, nc_dot_product),
    (checks.nearest_codes, nc_wrong_dim), (checks.nearest_codes, nc_float),
    (checks.quantize, q_beta_swapped), (checks.quantize, q_no_straight_through),
    (checks.quantize, q_no_stop_gradient), (checks.quantize, q_fixed_beta), (checks.quantize, q_no_permute),
    (checks.quantize, q_leaks_into_codebook), (checks.quantize, q_in_place_codebook_loss),
    (checks.quantize, q_sum_not_mean), (checks.quantize, q_backward_inside),
    (checks.ema_update, ema_in_place), (checks.ema_update, ema_in_place_one_hot_free),
    (checks.ema_update, ema_no_smoothing), (checks.ema_update, ema_decay_swapped),
    (checks.ema_update, ema_mean_not_sum),
    (checks.perplexity, ppl_log2), (checks.perplexity, ppl_entropy_only), (checks.perplexity, ppl_nan_for_unused),
    (checks.perplexity, ppl_used_count),
], ids=lambda f: f.__name__)
def test_wrong_implementations_are_rejected(check, wrong, capsys):
    with pytest.raises(AssertionError):
        check(wrong, strict=True)
    assert check(wrong).__wrapped__ is check.reference
    assert "✗" in capsys.readouterr().out


@pytest.mark.parametrize("check, right", [
    (checks.nearest_codes, nc_cdist), (checks.quantize, q_correct_alternative),
    (checks.ema_update, ema_one_hot_correct), (checks.perplexity, ppl_eps_inside_log),
], ids=lambda f: f.__name__)
def test_correct_alternatives_pass(check, right):
    assert check(right, strict=True) is right


def test_references_are_the_package_functions():
    assert checks.nearest_codes.reference is ref.nearest_codes
    assert checks.quantize.reference is ref.quantize
    assert checks.ema_update.reference is ref.ema_update
    assert checks.perplexity.reference is ref.perplexity


def test_straight_through_leak_is_named():
    with pytest.raises(AssertionError, match="leaks into the codebook"):
        checks.quantize(q_leaks_into_codebook, strict=True)
