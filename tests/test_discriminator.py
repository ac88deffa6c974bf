"""PatchGAN: taming's layers, keys, init, parameter counts, output grid and receptive field."""
import pytest
import torch
import torch.nn as nn

from minimovq.discriminator import NLayerDiscriminator, patchgan_receptive_field


@pytest.mark.parametrize("n_layers, params", [(3, 2_765_633), (2, 663_361)])
def test_parameter_counts(n_layers, params):
    with torch.device("meta"):
        d = NLayerDiscriminator(input_nc=3, ndf=64, n_layers=n_layers)
    assert sum(p.numel() for p in d.parameters()) == params


def test_keys_and_layers_follow_taming():
    with torch.device("meta"):
        d = NLayerDiscriminator()
    keys = [k for k in d.state_dict() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert keys == ["main.0.weight", "main.0.bias", "main.2.weight", "main.3.weight", "main.3.bias",
                    "main.5.weight", "main.6.weight", "main.6.bias", "main.8.weight", "main.9.weight",
                    "main.9.bias", "main.11.weight", "main.11.bias"]
    convs = [m for m in d.main if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) and c.padding == (1, 1) for c in convs)
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    lrelus = [m for m in d.main if isinstance(m, nn.LeakyReLU)]
    assert len(lrelus) == 4 and all(m.negative_slope == 0.2 for m in lrelus)


def test_init_statistics():
    torch.manual_seed(0)
    d = NLayerDiscriminator()
    w = d.main[8].weight  # 256 -> 512, 2M weights
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    bn = d.main[9]
    assert abs(bn.weight.mean().item() - 1.0) < 5e-3 and abs(bn.weight.std().item() - 0.02) < 5e-3
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_output_grid_at_256_px():
    torch.manual_seed(0)
    d = NLayerDiscriminator(ndf=8)  # the grid does not depend on the width; keep it cheap
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert NLayerDiscriminator(ndf=8, n_layers=2)(torch.randn(1, 3, 256, 256)).shape == (1, 1, 62, 62)


def test_receptive_field_formula():
    assert [patchgan_receptive_field(n) for n in (1, 2, 3, 4, 5)] == [16, 34, 70, 142, 286]
    with pytest.raises(ValueError):
        patchgan_receptive_field(0)


@pytest.mark.parametrize("n_layers", [2, 3])
def test_receptive_field_measured_by_gradient(n_layers):
    """The input pixels that influence one interior logit form a square of receptive_field pixels."""
    torch.manual_seed(0)
    d = NLayerDiscriminator(ndf=4, n_layers=n_layers).eval()  # eval: train-mode BN mixes all pixels
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    assert rows.max() - rows.min() + 1 == d.receptive_field == patchgan_receptive_field(n_layers)
    assert cols.max() - cols.min() + 1 == d.receptive_field


def test_min_size_and_bad_input():
    d = NLayerDiscriminator(ndf=4, n_layers=2)
    assert d.min_size == 12 and NLayerDiscriminator(ndf=4).min_size == 24
    assert d(torch.randn(2, 3, 12, 12)).shape == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="at least 12"):
        d(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="C=3"):
        d(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="n_layers"):
        NLayerDiscriminator(n_layers=0)


def test_gradients_and_unclamped_inputs():
    d = NLayerDiscriminator(ndf=8, n_layers=2)
    x = (torch.randn(2, 3, 16, 16) * 3).requires_grad_(True)  # fakes may leave [-1, 1]
    d(x).mean().backward()
    assert x.grad.abs().sum() > 0 and d.main[0].weight.grad is not None
