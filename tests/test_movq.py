"""MoVQ: SpatialNorm, SBER's keys and parameter counts, data flow, multichannel codes, loading checkpoints."""
import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minimovq import movq
from minimovq.checkpoint import CheckpointError
from minimovq.metrics import grid_artifact, smooth_regions
from minimovq.movq import CONFIGS, MoVQ, SpatialNorm, from_config, group_quantize
from minimovq.quantize import EMAVectorQuantizer, VectorQuantizer, quantize

from tiny_configs import DD, TINY  # tests/tiny_configs.py


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MoVQ(**TINY)


def images(*shape):
    return torch.rand(*shape) * 2 - 1


def test_spatial_norm_equation_nearest_to_exact_size():
    torch.manual_seed(0)
    sn = SpatialNorm(64, 4)
    assert list(sn.state_dict()) == ["norm_layer.weight", "norm_layer.bias", "conv_y.weight", "conv_y.bias",
                                     "conv_b.weight", "conv_b.bias"]
    assert sn.norm_layer.affine and sn.norm_layer.eps == 1e-6 and sn.norm_layer.num_groups == 32
    f, z_q = torch.randn(2, 64, 6, 9), torch.randn(2, 4, 2, 3)  # H ×3, W ×3, non-square
    z_q_up = z_q.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3)
    expected = sn.norm_layer(f) * sn.conv_y(z_q_up) + sn.conv_b(z_q_up)
    torch.testing.assert_close(sn(f, z_q), expected)
    assert sn(torch.randn(1, 64, 5, 7), torch.randn(1, 4, 3, 2)).shape == (1, 64, 5, 7)  # non-integer factors
    with pytest.raises(ValueError, match="z_q must have shape"):
        sn(f, torch.randn(2, 8, 2, 3))


@pytest.mark.parametrize("f_shape,z_shape", [((2, 64, 8, 12), (2, 4, 2, 3)),   # integer factors 4 and 4
                                             ((1, 64, 6, 9), (1, 4, 2, 3)),    # 3 and 3
                                             ((1, 64, 4, 4), (1, 4, 4, 4)),    # 1: same size
                                             ((2, 64, 5, 7), (2, 4, 3, 2))])   # non-integer: interpolate
def test_spatial_norm_equals_plain_equation_in_value_and_gradient(f_shape, z_shape):
    torch.manual_seed(0)
    sn = SpatialNorm(64, 4)
    f, z_q = torch.randn(*f_shape, requires_grad=True), torch.randn(*z_shape, requires_grad=True)
    z_q_up = F.interpolate(z_q, size=f.shape[-2:], mode="nearest")
    plain = sn.norm_layer(f) * sn.conv_y(z_q_up) + sn.conv_b(z_q_up)
    out = sn(f, z_q)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4)
    g = torch.randn_like(plain)
    inputs = (f, z_q, *sn.parameters())
    for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(plain, inputs, g), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,params", [("67M", 67_832_495), ("102M", 101_614_255), ("270M", 270_669_103)])
def test_released_configs_param_counts(name, params):
    with torch.device("meta"):
        m = from_config(name)
    assert sum(p.numel() for p in m.parameters()) == params
    sd = m.state_dict()
    if name == "67M":
        assert len(sd) == 431
        assert sd["quantize.embedding.weight"].shape == (16384, 4)
        assert sd["decoder.up.3.attn.2.norm.conv_y.weight"].shape == (512, 4, 1, 1)  # attention at 32 px
        assert sd["decoder.norm_out.norm_layer.weight"].shape == (128,)
        assert sd["post_quant_conv.weight"].shape == (4, 4, 1, 1)
        for k in ("decoder.mid.block_1.norm1.conv_b.bias", "decoder.up.0.block.2.norm2.norm_layer.bias",
                  "decoder.mid.attn_1.norm.conv_y.weight", "encoder.down.3.attn.1.norm.weight",
                  "encoder.norm_out.weight"):
            assert k in sd, k
        assert not any(k.startswith("encoder.") and ("conv_y" in k or "norm_layer" in k) for k in sd)


def test_every_decoder_norm_is_spatial_and_encoder_plain(model):
    dec_norms = [m for m in model.decoder.modules() if isinstance(m, (SpatialNorm, nn.GroupNorm))]
    spatial = [m for m in model.decoder.modules() if isinstance(m, SpatialNorm)]
    # every GroupNorm in the decoder lives inside a SpatialNorm
    assert len(dec_norms) == 2 * len(spatial)
    assert not any(isinstance(m, SpatialNorm) for m in model.encoder.modules())


def test_data_flow_conv_in_gets_post_quant_and_norms_get_quant(model):
    x = images(2, 3, 16, 24)
    z_q, _, idx = model.encode(x)
    seen, z_qs = {}, []

    def conv_in_hook(module, inputs, output):
        seen["conv_in"] = inputs[0]

    def norm_hook(module, inputs, output):
        z_qs.append(inputs[1])

    model.decoder.conv_in.register_forward_hook(conv_in_hook)
    for m in model.decoder.modules():
        if isinstance(m, SpatialNorm):
            m.register_forward_hook(norm_hook)
    x_hat = model.decode(z_q)
    assert x_hat.shape == x.shape
    torch.testing.assert_close(seen["conv_in"], model.post_quant_conv(z_q))
    assert len(z_qs) == sum(isinstance(m, SpatialNorm) for m in model.modules()) and all(z is z_q for z in z_qs)
    torch.testing.assert_close(model.decode_indices(idx), x_hat)
    assert model.decode_indices(torch.randint(0, 32, (3, 5, 2))).shape == (3, 3, 10, 4)  # any batch and grid


def test_multichannel_groups():
    torch.manual_seed(0)
    m = MoVQ(**TINY, groups=4)
    assert m.quantize.embedding.weight.shape == (32, 2)
    x = images(2, 3, 16, 16)
    z_q, _, idx = m.encode(x)
    assert idx.shape == (2, 8, 8, 4) and z_q.shape == (2, 8, 8, 8)
    torch.testing.assert_close(m.decode_indices(idx), m.decode(z_q))
    # contiguous groups: channels [2g, 2g+2) of z_q are code idx[..., g]
    e = m.quantize.embedding.weight
    torch.testing.assert_close(z_q[0, 2:4, 3, 5], e[idx[0, 3, 5, 1]])


def test_group_quantize_reduces_to_plain_quantizer_and_is_straight_through():
    torch.manual_seed(0)
    z, codebook = torch.randn(2, 8, 3, 5, requires_grad=True), torch.randn(16, 8)
    z_q, idx = group_quantize(z, codebook, 1)
    z_q_ref, _, idx_ref = quantize(z, codebook)
    assert idx.shape == (2, 3, 5, 1)
    torch.testing.assert_close(idx[..., 0], idx_ref)
    torch.testing.assert_close(z_q, z_q_ref)
    vq = VectorQuantizer(16, 8, groups=4)
    z_q4, idx4 = group_quantize(z, vq.embedding.weight, 4)
    z_q_vq, _, idx_vq = vq(z)
    torch.testing.assert_close(idx4, idx_vq)
    torch.testing.assert_close(z_q4, z_q_vq)
    g = torch.randn_like(z_q4)
    (z_q4 * g).sum().backward()
    torch.testing.assert_close(z.grad, g)
    with pytest.raises(ValueError, match="groups"):
        group_quantize(z, codebook, 3)


def _fabricate_sber_ckpt(path, model):
    """A file in SBER's Lightning layout: model + loss.* (LPIPS, discriminator) + model_ema.* (weight EMA)."""
    sd = dict(model.state_dict())
    sd["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(64, 3, 3, 3)
    sd["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(100, dtype=torch.int)
    sd["model_ema.encoderconv_inweight"] = torch.randn(32, 3, 3, 3)
    torch.save({"state_dict": sd, "global_step": 3, "epoch": 0}, path)


def test_from_pretrained_with_a_path(tmp_path, model, monkeypatch):
    monkeypatch.setitem(CONFIGS, "67M", TINY)  # a tiny stand-in: the real file is 270 MB
    path = tmp_path / "movqgan_67M.ckpt"
    _fabricate_sber_ckpt(path, model)
    loaded = MoVQ.from_pretrained("67M", checkpoint_path=path)
    assert isinstance(loaded, MoVQ) and not loaded.training and loaded.quantize.legacy
    model.eval()
    x = images(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x)[0], model(x)[0])
    other = MoVQ(**dict(TINY, n_embed=64))
    bad = tmp_path / "other.ckpt"
    _fabricate_sber_ckpt(bad, other)
    with pytest.raises(ValueError, match="shape mismatches"):
        MoVQ.from_pretrained("67M", checkpoint_path=bad)
    with pytest.raises(ValueError, match="67M, 102M, 270M"):
        MoVQ.from_pretrained("1B", checkpoint_path=path)


def test_from_pretrained_downloads_through_hub(tmp_path, model, monkeypatch):
    monkeypatch.setitem(CONFIGS, "102M", TINY)
    path = tmp_path / "movqgan_102M.ckpt"
    _fabricate_sber_ckpt(path, model)
    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        return str(path)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=fake_download))
    MoVQ.from_pretrained("102M")
    assert calls == [("ai-forever/MoVQGAN", "movqgan_102M.ckpt")]


def test_from_pretrained_offline_explains_how_to_get_the_file(monkeypatch, tmp_path):
    def offline(repo_id, filename):
        raise OSError("Connection refused")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=offline))
    with pytest.raises(CheckpointError, match=r"offline.*huggingface.co/ai-forever/MoVQGAN.*checkpoint_path"):
        MoVQ.from_pretrained("67M")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(CheckpointError, match="pip install huggingface_hub"):
        MoVQ.from_pretrained("67M")
    with pytest.raises(CheckpointError, match="no checkpoint file.*movqgan_67M.ckpt"):
        MoVQ.from_pretrained("67M", checkpoint_path=tmp_path / "nowhere.ckpt")


def test_lesson_configs_and_vqgan_baseline_at_equal_budget():
    from minimovq.vqgan import VQGAN

    for name in ("tiny", "small", "base"):
        cfg = CONFIGS[name]
        assert cfg["embed_dim"] % 4 == 0  # groups=4 works
    m, v = from_config("tiny"), VQGAN(**CONFIGS["tiny"])
    x = images(1, 3, 32, 32)
    assert m(x)[0].shape == v(x)[0].shape == x.shape
    assert set(v.state_dict()) < {k.replace(".norm_layer.", ".") for k in m.state_dict()}


def test_overfit_one_batch(overfit):
    torch.manual_seed(0)
    m = MoVQ(dict(DD, attn_resolutions=()), n_embed=32, embed_dim=8)
    x = F.interpolate(images(2, 3, 4, 4), size=(16, 16), mode="bilinear", align_corners=False)  # smooth images

    def loss_fn():
        x_hat, vq_loss, _ = m(x)
        rec = F.mse_loss(x_hat, x)
        return rec + vq_loss, rec

    rec = overfit(loss_fn, m.parameters(), steps=60, lr=1e-3)
    assert rec[-1] < rec[0] / 10, rec[::10]


def test_summary_prints_layer_table(model):
    pytest.importorskip("torchinfo")
    stats = model.summary(depth=3, verbose=0)
    assert stats.total_params == sum(p.numel() for p in model.parameters())
    table = str(stats)
    assert "SpatialNorm" in table and "Input Shape" in table and "Output Shape" in table
    assert movq.HF_REPO == "ai-forever/MoVQGAN"


def test_save_and_from_checkpoint_roundtrip(tmp_path):
    from minimovq.vqgan import VQGAN

    torch.manual_seed(0)
    m = MoVQ(**TINY, groups=4).eval()
    path = m.save(tmp_path / "lesson4_movq.pt", image_size=16, dataset="shapes")
    state = torch.load(path, weights_only=True)
    assert state["class"] == "MoVQ" and state["image_size"] == 16 and state["groups"] == 4
    back = MoVQ.from_checkpoint(path).eval()
    x = images(2, 3, 16, 16)
    torch.testing.assert_close(back(x)[0], m(x)[0])
    # the recipe Lesson 5 uses: from_config(config dict, groups=...) + load_state_dict(state["model"])
    again = MoVQ.from_config(state["config"], groups=state["groups"])
    again.load_state_dict(state["model"])
    torch.testing.assert_close(again.eval()(x)[0], m(x)[0])
    with pytest.raises(ValueError, match="expected a VQGAN"):
        VQGAN.from_checkpoint(path)


@pytest.mark.parametrize("make_quantizer", [
    lambda k, d: VectorQuantizer(k, d, dead_code_threshold=5, groups=4),          # restarts (Lesson 3) + groups
    lambda k, d: EMAVectorQuantizer(k, d, decay=0.9, l2_norm=True),
])
def test_save_and_from_checkpoint_rebuild_a_non_default_quantizer(tmp_path, make_quantizer):
    torch.manual_seed(0)
    m = MoVQ(**TINY, quantizer=make_quantizer(TINY["n_embed"], TINY["embed_dim"]))
    x = images(2, 3, 16, 16)
    m(x)                                                            # one training step's buffers (restart counts)
    m.eval()
    options = m.config()["quantizer"]
    assert options["class"] == type(m.quantize).__name__ and "n_embed" not in options
    back = MoVQ.from_checkpoint(m.save(tmp_path / "m.pt"))          # failed before: unexpected buffers
    assert type(back.quantize) is type(m.quantize) and back.quantize.extra_repr() == m.quantize.extra_repr()
    torch.testing.assert_close(back.eval()(x)[0], m(x)[0])
    assert "quantizer" not in MoVQ(**TINY).config()                  # default models keep taming's config
    grouped = MoVQ(**TINY, groups=4, legacy=True, quantizer={"dead_code_threshold": 7})   # a dict takes the model's
    assert (grouped.quantize.groups, grouped.quantize.legacy, grouped.quantize.dead_code_threshold) == (4, True, 7)
    assert grouped.config()["quantizer"] == {"class": "VectorQuantizer", "dead_code_threshold": 7}
    with pytest.raises(ValueError, match="unknown quantizer class 'Mine'"):
        MoVQ(**TINY, quantizer={"class": "Mine"})


def test_smooth_regions_and_grid_artifact_measure():
    ramp = torch.linspace(-0.8, 0.8, 32)
    x = ramp.view(1, 1, 1, 32).expand(2, 3, 32, 32).clone()      # a smooth horizontal gradient
    assert smooth_regions(x, 4).all()
    edged = x.clone()
    edged[:, :, :, 16:] += 0.5                                     # a vertical edge at column 16
    m = smooth_regions(edged, 4)
    assert not m[..., 12:20].any() and m[..., :8].all()
    # error unrelated to the grid: score near 0, blockiness near 1
    clean = grid_artifact(x + 0.01 * torch.randn_like(x), x, 4)
    assert clean["score"] < 0.1 and abs(clean["blockiness"] - 1) < 0.2 and clean["smooth_fraction"] == 1.0
    assert clean["phase"].shape == (4, 4)
    # a staircase: one flat colour per latent cell (what runs of repeated codes produce)
    stairs = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")
    blocky = grid_artifact(stairs, x, 4)
    assert blocky["blockiness"] > 3 and blocky["score"] > 0.3
    assert blocky["phase"][:, 0].mean() > blocky["phase"][:, 1].mean()   # errors peak at the cell borders
