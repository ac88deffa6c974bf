"""minimovq.vqvae: the paper's VQ-VAE, with either quantizer."""
import pytest
import torch
import torch.nn.functional as F

from minimovq.quantize import EMAVectorQuantizer, VectorQuantizer
from minimovq.vqvae import VQVAE

TINY = dict(hidden=32, res_hidden=8, num_res_layers=1, embed_dim=8, n_embed=32)


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.rand(2, 3, 16, 16) * 2 - 1


@pytest.mark.parametrize("quantizer", ["ema", "vq"])
def test_shapes_and_round_trip(quantizer, x):
    model = VQVAE(**TINY, quantizer=quantizer).eval()
    z_q, loss, idx = model.encode(x)
    assert z_q.shape == (2, 8, 4, 4) and loss.shape == () and idx.shape == (2, 4, 4)
    x_hat, loss2, idx2 = model(x)
    assert x_hat.shape == x.shape and torch.equal(idx, idx2)
    assert torch.allclose(model.decode_indices(idx), x_hat, atol=1e-5)
    # any batch and grid of codes decodes
    assert model.decode_indices(torch.randint(32, (5, 3, 6))).shape == (5, 3, 12, 24)


def test_architecture_and_state_dict_keys():
    model = VQVAE(**TINY, quantizer="vq")
    keys = list(model.state_dict())
    assert "quantize.embedding.weight" in keys and "quant_conv.weight" in keys
    assert model.state_dict()["quantize.embedding.weight"].shape == (32, 8)
    assert isinstance(model.quantize, VectorQuantizer) and model.quantize.legacy is False
    strided = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert [m.kernel_size for m in strided] == [(4, 4), (4, 4)]
    transposed = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride) for m in transposed] == [((4, 4), (2, 2))] * 2
    ema = VQVAE(**TINY)
    assert isinstance(ema.quantize, EMAVectorQuantizer)
    assert {"quantize.cluster_size", "quantize.embed_sum"} <= set(ema.state_dict())
    custom = EMAVectorQuantizer(32, 8, groups=2)
    assert VQVAE(**TINY, quantizer=custom).quantize is custom
    grouped = VQVAE(**TINY, quantizer="vq", quantizer_kwargs=dict(groups=4, l2_norm=True))
    assert grouped.quantize.groups == 4 and grouped.encode(torch.zeros(1, 3, 8, 8))[2].shape == (1, 2, 2, 4)


def test_gradients_reach_the_encoder_through_the_quantizer(x):
    model = VQVAE(**TINY, quantizer="ema")
    x_hat, loss, _ = model(x)
    (F.mse_loss(x_hat, x) + loss).backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.quantize.embedding.weight.grad is None  # the EMA codebook gets no gradient


def test_bad_input(x):
    model = VQVAE(**TINY)
    with pytest.raises(ValueError, match="3"):
        model(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(2, 3, 18, 18))
    with pytest.raises(ValueError, match="quantizer"):
        VQVAE(**TINY, quantizer="gumbel")


@pytest.mark.parametrize("quantizer", ["ema", "vq"])
def test_overfits_one_batch(quantizer, overfit):
    torch.manual_seed(0)
    x = F.interpolate(torch.rand(2, 3, 4, 4) * 2 - 1, scale_factor=4)  # 16 px images made of 4×4 blocks
    model = VQVAE(**TINY, quantizer=quantizer)

    def loss_fn():
        x_hat, vq_loss, _ = model(x)
        rec = F.mse_loss(x_hat, x)
        return rec + vq_loss, rec

    losses = overfit(loss_fn, model.parameters(), steps=100, lr=3e-3)
    assert losses[-1] < losses[0] / 4, (losses[0], losses[-1])
