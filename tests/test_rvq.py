"""minimovq.rvq: stages on residuals, one straight-through on the sum, quantizer dropout, lookups; and every
Lesson 6 quantizer as the quantizer of VQGAN and MoVQ."""
import pytest
import torch

from minimovq.fsq import FSQ
from minimovq.lfq import LFQ
from minimovq.movq import MoVQ
from minimovq.quantize import EMAVectorQuantizer, VectorQuantizer
from minimovq.rvq import ResidualVQ
from minimovq.vqgan import VQGAN
from minimovq.vqvae import VQVAE
from tiny_configs import TINY


def _rvq(**kw):
    torch.manual_seed(0)
    q = ResidualVQ(3, 8, 4, **kw)
    for layer in q.layers:
        layer.embedding.weight.data.normal_()
    return q


def test_stages_quantize_residuals_and_sum():
    q = _rvq().eval()
    z = torch.randn(2, 4, 3, 3)
    z_q, loss, idx = q(z)
    assert isinstance(q.layers, torch.nn.ModuleList) and all(isinstance(m, VectorQuantizer) for m in q.layers)
    assert idx.shape == (2, 3, 3, 3) and z_q.shape == z.shape
    residual, total = z, torch.zeros_like(z)
    for i, layer in enumerate(q.layers):
        e = layer.get_codebook_entry(idx[..., i])
        assert torch.equal(layer(residual)[2], idx[..., i])  # stage i quantizes what stages < i left
        residual, total = residual - e, total + e
    assert torch.allclose(z_q, total, atol=1e-6) and torch.allclose(q.get_codebook_entry(idx), z_q, atol=1e-6)


def test_deeper_is_closer():
    q = _rvq().eval()
    z = torch.randn(4, 4, 5, 5)
    errs = [(q(z, n_quantizers=n)[0] - z).pow(2).mean().item() for n in (1, 2, 3)]
    assert errs[0] >= errs[1] >= errs[2]
    assert (q(z, n_quantizers=2)[2][..., 2] == -1).all()


def test_one_straight_through_and_losses_reach_every_codebook():
    q = _rvq()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, loss, _ = q(z)
    g = torch.randn_like(z)
    (gz,) = torch.autograd.grad(z_q, z, g, retain_graph=True)
    assert torch.allclose(gz, g)  # not Q·g
    loss.backward()
    assert all(layer.embedding.weight.grad.abs().sum() > 0 for layer in q.layers)


def test_ema_stages_rotation_and_dropout():
    q = ResidualVQ(4, 8, 4, quantizer="ema", quantizer_dropout=1.0, dead_code_threshold=2)
    assert all(isinstance(m, EMAVectorQuantizer) for m in q.layers)
    torch.manual_seed(0)
    depths = {int((q(torch.randn(2, 4, 3, 3))[2][0, 0, 0] >= 0).sum()) for _ in range(30)}
    assert depths == {1, 2, 3, 4}
    assert (q.eval()(torch.randn(2, 4, 3, 3))[2] >= 0).all()  # no dropout in eval
    r = _rvq(rotation_trick=True)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    (gz,) = torch.autograd.grad(r(z)[0], z, torch.ones(2, 4, 3, 3))
    assert not torch.allclose(gz, torch.ones_like(gz))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="ResidualVQ itself"):
        ResidualVQ(2, 8, 4, rotation_trick=False, groups=2)
    with pytest.raises(ValueError, match="n_quantizers"):
        _rvq()(torch.randn(1, 4, 2, 2), n_quantizers=4)
    with pytest.raises(ValueError, match="embed_dim=4"):
        _rvq()(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        _rvq().get_codebook_entry(torch.full((1, 2, 2, 3), 8))


def test_joint_indices():
    q = _rvq()
    idx = torch.tensor([[[[1, 2, 3]]]])
    assert q.joint_indices(idx).item() == 1 + 2 * 8 + 3 * 64


def smooth_images():
    """8 images (3, 16, 16) that a 4×4 latent grid can hold: bilinear upsampling of 4×4 noise."""
    return torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=16, mode="bilinear")


def test_vqvae_with_rvq_overfits_one_batch():
    torch.manual_seed(0)
    model = VQVAE(hidden=32, res_hidden=8, num_res_layers=1, embed_dim=8,
                  quantizer=ResidualVQ(3, 16, 8, quantizer="ema", dead_code_threshold=5))
    x = smooth_images()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    rec = []
    for _ in range(100):
        x_hat, vq_loss, idx = model(x)
        loss = torch.nn.functional.mse_loss(x_hat, x)
        opt.zero_grad()
        (loss + vq_loss).backward()
        opt.step()
        rec.append(loss.item())
    assert rec[-1] < rec[0] / 3 and idx.shape == (8, 4, 4, 3)


@pytest.mark.parametrize("make", [lambda: ResidualVQ(2, 8, 8), lambda: FSQ([8, 5, 5, 5, 4, 4, 3, 3]), lambda: LFQ(8),
                                  lambda: VectorQuantizer(32, 8, rotation_trick=True)],
                         ids=["rvq", "fsq", "lfq", "vq-rotation"])
@pytest.mark.parametrize("cls", [VQGAN, MoVQ])
def test_every_lesson6_quantizer_drives_vqgan_and_movq(make, cls):
    torch.manual_seed(0)
    model = cls(**TINY, quantizer=make())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    x_hat, vq_loss, idx = model(x)
    assert x_hat.shape == x.shape and vq_loss.shape == ()
    (x_hat.mean() + vq_loss).backward()
    assert torch.allclose(model.decode_indices(idx),
                          model.decode(model.encode(x)[0]), atol=1e-4)
