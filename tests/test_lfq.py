"""minimovq.lfq: sign quantization, bit indices, and the entropy penalty (exact and factorised)."""
import itertools
import math

import pytest
import torch

from minimovq.lfq import LFQ, bits_to_indices, entropy_terms, indices_to_bits, lfq_quantize
from minimovq.vqvae import VQVAE


def test_sign_and_straight_through():
    z = torch.tensor([[0.3, -0.2, 0.0, 5.0]], requires_grad=True)
    q = lfq_quantize(z)
    assert q.tolist() == [[1.0, -1.0, -1.0, 1.0]]  # 0 goes to −1
    (g,) = torch.autograd.grad(q.sum(), z)
    assert torch.equal(g, torch.ones_like(z))


def test_indices_are_bits():
    z = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    assert bits_to_indices(z).tolist() == [5, 0, 7]
    assert torch.equal(indices_to_bits(torch.tensor([5, 0, 7]), 3), z)


def brute_entropies(z, tau):
    """Per-sample and codebook entropy over all 2^d corners with the softmax of −‖z − c‖²/τ."""
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=z.shape[1])), dtype=torch.float64)
    p = torch.softmax(-torch.cdist(z.double(), corners).pow(2) / tau, dim=1)  # (N, 2^d)
    per_sample = -(torch.special.xlogy(p, p)).sum(1).mean()
    avg = p.mean(0)
    return per_sample, -torch.special.xlogy(avg, avg).sum()


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_exact_entropies_match_brute_force(tau):
    torch.manual_seed(0)
    z = torch.randn(64, 5) * 0.5
    ps, cb = entropy_terms(z, temperature=tau, chunk_elements=64 * 3)  # several blocks of codes
    bps, bcb = brute_entropies(z, tau)
    assert math.isclose(ps.item(), bps.item(), rel_tol=1e-4) and math.isclose(cb.item(), bcb.item(), rel_tol=1e-4)


def test_factorised_codebook_entropy_is_an_upper_bound():
    torch.manual_seed(0)
    z = torch.randn(64, 5) * 0.5 + torch.randn(64, 1)  # correlated bits
    _, exact = entropy_terms(z, temperature=1.0)
    ps, factorised = entropy_terms(z, temperature=1.0, exact_max_dim=0)
    assert factorised >= exact - 1e-5 and factorised <= 5 * math.log(2) + 1e-5


def test_penalty_rewards_confident_spread_codes():
    q = LFQ(3, commitment_weight=0.0, temperature=0.1)
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))  # every code once, confidently
    spread = corners.t().reshape(1, 3, 8, 1)
    collapsed = torch.ones(1, 3, 8, 1)
    assert q(spread)[1] < q(collapsed)[1]
    assert math.isclose(q(spread)[1].item(), -0.1 * 3 * math.log(2), rel_tol=1e-3)


def test_quantizer_interface_and_gradient():
    q = LFQ(9)
    assert q.n_embed == 512 and q.embed_dim == 9 and q.state_dict() == {}
    z = torch.randn(2, 9, 4, 4, requires_grad=True)
    z_q, loss, idx = q(z)
    assert z_q.shape == z.shape and loss.shape == () and idx.shape == (2, 4, 4) and idx.max() < 512
    assert torch.equal(q.get_codebook_entry(idx), z_q.detach())
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="dim=9"):
        q(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="2\\^9"):
        q.get_codebook_entry(torch.full((1, 1, 1), 512))


def test_large_dim_does_not_enumerate_codes():
    q = LFQ(40)  # 2^40 corners: factorised entropy, still instant
    z_q, loss, idx = q(torch.randn(2, 40, 3, 3))
    assert torch.isfinite(loss) and idx.max() < 2 ** 40


def smooth_images():
    """8 images (3, 16, 16) that a 4×4 latent grid can hold: bilinear upsampling of 4×4 noise."""
    return torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=16, mode="bilinear")


def test_vqvae_with_lfq_overfits_one_batch():
    torch.manual_seed(0)
    model = VQVAE(hidden=32, res_hidden=8, num_res_layers=1, embed_dim=9, quantizer=LFQ(9))
    x = smooth_images()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rec = []
    for _ in range(120):  # sign codes flip in jumps: LFQ's curve is noisier than FSQ's
        x_hat, vq_loss, _ = model(x)
        loss = torch.nn.functional.mse_loss(x_hat, x)
        opt.zero_grad()
        (loss + vq_loss).backward()
        opt.step()
        rec.append(loss.item())
    assert rec[-1] < rec[0] / 2
