"""minimovq.fsq: the paper's Appendix A.1 number for number, indices, and the quantizer interface."""
import math

import numpy as np
import pytest
import torch

from minimovq.fsq import FSQ, bound, codes_to_indices, fsq_quantize, indices_to_codes
from minimovq.vqvae import VQVAE


def appendix_a1(z: np.ndarray, levels) -> np.ndarray:
    """The paper's listing, transcribed into NumPy float64 (bound, round, renormalise)."""
    levels = np.asarray(levels, dtype=np.float64)
    eps = 1e-3
    half_l = (levels - 1) * (1 - eps) / 2
    offset = np.where(levels % 2 == 1, 0.0, 0.5)
    shift = np.tan(offset / half_l)
    bounded = np.tanh(z + shift) * half_l - offset
    return np.round(bounded) / (levels // 2)


@pytest.mark.parametrize("levels", [[8, 8, 8], [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 6, 5], [2, 3, 4]])
def test_matches_the_papers_code(levels):
    torch.manual_seed(0)
    z = torch.randn(500, len(levels), dtype=torch.float64) * 2
    assert np.allclose(fsq_quantize(z, levels).numpy(), appendix_a1(z.numpy(), levels), atol=1e-12)
    # every level is reached, and nothing else
    wide = torch.linspace(-10, 10, 2001, dtype=torch.float64).unsqueeze(1).expand(-1, len(levels))
    for i, L in enumerate(levels):
        assert fsq_quantize(wide, levels)[:, i].unique().numel() == L


def test_straight_through_gradient_is_bounds_derivative():
    z = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    levels = [8, 5, 4]
    (g,) = torch.autograd.grad(fsq_quantize(z, levels).sum(), z)
    zz = z.detach().clone().requires_grad_()
    (gb,) = torch.autograd.grad((bound(zz, levels) / torch.tensor([4.0, 2.0, 2.0], dtype=torch.float64)).sum(), zz)
    assert torch.allclose(g, gb)


def test_atanh_variant_centres_the_bound():
    zero = torch.zeros(1, 3, dtype=torch.float64)
    assert bound(zero, [8, 6, 4], shift="atanh").abs().max() < 1e-12
    assert bound(zero, [8, 6, 4]).abs().max() > 1e-6  # the paper's tan is off by a little
    with pytest.raises(ValueError, match="L = 2"):
        FSQ([2, 8], shift="atanh")


def test_indices_basis_and_round_trip():
    levels = [8, 5, 3]
    codes = indices_to_codes(torch.arange(120), levels)
    assert torch.equal(codes_to_indices(codes, levels), torch.arange(120))
    # basis cumprod([1, 8, 5]): index 1 moves channel 0, index 8 channel 1, index 40 channel 2
    base = indices_to_codes(torch.tensor(0), levels)
    for idx, ch in ((1, 0), (8, 1), (40, 2)):
        assert (indices_to_codes(torch.tensor(idx), levels) != base).nonzero().flatten().tolist() == [ch]


def test_quantizer_interface():
    q = FSQ([8, 8, 8])
    assert q.n_embed == 512 and q.embed_dim == 3 and math.isclose(q.bits, 9) and q.state_dict() == {}
    z = torch.randn(2, 3, 4, 5) * 3
    z_q, loss, idx = q(z)
    assert z_q.shape == z.shape and loss.item() == 0.0 and idx.shape == (2, 4, 5) and idx.dtype == torch.long
    assert 0 <= idx.min() and idx.max() < 512
    assert torch.allclose(q.get_codebook_entry(idx), z_q)
    assert q.codebook().shape == (512, 3) and q.codebook().unique(dim=0).shape[0] == 512
    with pytest.raises(ValueError, match="embed_dim=3"):
        q(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])
    with pytest.raises(ValueError, match=r"\[0, 512\)"):
        q.get_codebook_entry(torch.full((1, 2, 2), 512))


def test_bfloat16_input_keeps_its_dtype():
    z = torch.randn(2, 3, 2, 2, dtype=torch.bfloat16)
    z_q, loss, _ = FSQ([8, 8, 8])(z)
    assert z_q.dtype == torch.bfloat16 and loss.dtype == torch.float32


def smooth_images():
    """8 images (3, 16, 16) that a 4×4 latent grid can hold: bilinear upsampling of 4×4 noise."""
    return torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=16, mode="bilinear")


def test_vqvae_with_fsq_overfits_one_batch():
    torch.manual_seed(0)
    model = VQVAE(hidden=32, res_hidden=8, num_res_layers=1, embed_dim=4, quantizer=FSQ([8, 6, 5, 5]))
    x = smooth_images()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        x_hat, vq_loss, _ = model(x)
        loss = torch.nn.functional.mse_loss(x_hat, x) + vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3
    assert model.decode_indices(model.encode(x)[2]).shape == x.shape
