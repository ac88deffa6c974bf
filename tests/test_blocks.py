"""Blocks of the VQGAN/MoVQ autoencoder: equations, shapes and taming's keys (reference facts §1, §2)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minimovq.blocks import AttnBlock, Decoder, Downsample, Encoder, Normalize, ResnetBlock, Upsample, swish

TINY = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=(1, 2),
            num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_normalize_is_taming_groupnorm():
    n = Normalize(64)
    assert (n.num_groups, n.num_channels, n.eps, n.affine) == (32, 64, 1e-6, True)
    with pytest.raises(ValueError, match="multiple of 32"):
        Normalize(48)


def test_resnet_block_equation_and_shortcut():
    same, wider = ResnetBlock(32, 32), ResnetBlock(32, 64)
    assert "nin_shortcut.weight" not in same.state_dict()
    assert list(wider.state_dict()) == [f"{m}.{p}" for m in ("norm1", "conv1", "norm2", "conv2", "nin_shortcut")
                                        for p in ("weight", "bias")]
    assert wider.nin_shortcut.kernel_size == (1, 1)
    x = torch.randn(2, 32, 5, 7)
    for block in (same, wider):
        h = block.conv1(swish(block.norm1(x)))
        h = block.conv2(swish(block.norm2(h)))
        short = block.nin_shortcut(x) if block is wider else x
        torch.testing.assert_close(block(x), short + h)
    assert wider(x).shape == (2, 64, 5, 7)


def test_attention_matches_softmax_formula_and_manual_path():
    block = AttnBlock(32)
    x = torch.randn(2, 32, 3, 5)
    h = block.norm(x)
    q, k, v = (c(h).flatten(2) for c in (block.q, block.k, block.v))  # (B, C, N)
    w = torch.softmax(q.transpose(1, 2) @ k * 32 ** -0.5, dim=-1)  # (B, N, N) over the keys
    expected = x + block.proj_out((v @ w.transpose(1, 2)).view(2, 32, 3, 5))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-4)
    block.manual = True
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-4)
    assert [k.split(".")[0] for k in block.state_dict()][::2] == ["norm", "q", "k", "v", "proj_out"]


def test_downsample_pads_right_and_bottom_only():
    down = Downsample(32)
    x = torch.randn(1, 32, 8, 6)
    y = down(x)
    assert y.shape == (1, 32, 4, 3)
    torch.testing.assert_close(y, F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2))
    symmetric = F.conv2d(x, down.conv.weight, down.conv.bias, stride=2, padding=1)
    assert not torch.allclose(y, symmetric)


def test_upsample_is_nearest_then_conv():
    up = Upsample(32)
    x = torch.randn(1, 32, 3, 4)
    torch.testing.assert_close(up(x), up.conv(x.repeat_interleave(2, 2).repeat_interleave(2, 3)))


def test_swish_equals_x_times_sigmoid_in_value_and_gradient():
    x = torch.randn(2, 32, 5, 7, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = swish(x), x_ref * torch.sigmoid(x_ref)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)


@pytest.mark.parametrize("shape", [(2, 32, 3, 4), (1, 32, 5, 1), (1, 32, 1, 1)])
def test_upsample_fast_path_equals_nearest_then_conv_with_gradients(shape):
    up = Upsample(32)
    x = torch.randn(*shape, requires_grad=True)
    # the plain equation, written out: every pixel repeated 2×2, then the 3×3 conv with padding 1
    plain = F.conv2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), up.conv.weight, up.conv.bias, padding=1)
    fast = up(x)
    assert fast.shape == (shape[0], 32, 2 * shape[2], 2 * shape[3])
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)
    g = torch.randn_like(plain)
    inputs = (x, up.conv.weight, up.conv.bias)
    for got, want in zip(torch.autograd.grad(fast, inputs, g), torch.autograd.grad(plain, inputs, g), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_encoder_decoder_shapes_non_square():
    enc, dec = Encoder(**TINY), Decoder(**TINY)
    x = torch.randn(2, 3, 16, 24)
    z = enc(x)
    assert z.shape == (2, 8, 8, 12)
    assert dec(z).shape == (2, 3, 16, 24)
    assert Encoder(**{**TINY, "double_z": True})(x).shape == (2, 16, 8, 12)


def test_decoder_up0_is_highest_resolution_and_attention_where_nominal():
    cfg = dict(TINY, ch_mult=(1, 2, 2), attn_resolutions=(4,))
    enc, dec = Encoder(**cfg), Decoder(**cfg)
    keys = list(dec.state_dict())
    # up.0 is the highest-resolution level: channels ch·ch_mult[0], no upsample; up.2 (lowest) has attention.
    assert dec.up[0].block[-1].out_channels == 32 and not hasattr(dec.up[0], "upsample")
    assert hasattr(dec.up[1], "upsample") and hasattr(dec.up[2], "upsample")
    assert len(dec.up[2].attn) == 2 and len(dec.up[0].attn) == 0 and len(dec.up[2].block) == 2
    assert keys[:2] == ["conv_in.weight", "conv_in.bias"] and keys[2].startswith("mid.block_1")
    assert keys[-4:] == ["norm_out.weight", "norm_out.bias", "conv_out.weight", "conv_out.bias"]
    # Encoder: level 2 (4 px nominal at resolution 16) has attention, the last level does not downsample.
    assert len(enc.down[2].attn) == 1 and not hasattr(enc.down[2], "downsample")
    assert "down.0.downsample.conv.weight" in enc.state_dict()
    assert "up.1.upsample.conv.weight" in dec.state_dict()


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="divisible"):
        Encoder(**dict(TINY, resolution=18, ch_mult=(1, 2, 2)))
    with pytest.raises(ValueError, match="ch_mult"):
        Decoder(**dict(TINY, ch_mult=()))


def test_pluggable_conditional_norm_receives_z_q():
    seen = []

    class FiLM(nn.Module):
        conditional = True

        def __init__(self, c):
            super().__init__()
            self.norm = Normalize(c)

        def forward(self, h, z_q):
            seen.append(z_q.shape)
            return self.norm(h) + z_q.mean()

    dec = Decoder(**TINY, norm=FiLM)
    z, z_q = torch.randn(1, 8, 4, 4), torch.randn(1, 5, 4, 4)
    assert dec.conditional and not Decoder(**TINY).conditional
    assert dec(z, z_q=z_q).shape == (1, 3, 8, 8)
    n_norms = sum(isinstance(m, FiLM) for m in dec.modules())
    assert len(seen) == n_norms and all(s == z_q.shape for s in seen)
    with pytest.raises(ValueError, match="z_q"):
        dec(z)
