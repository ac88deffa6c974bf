"""VQGAN: taming's keys and parameter count, the encode/decode API, loading taming checkpoints."""
import pytest
import torch
import torch.nn.functional as F

from minimovq.checkpoint import CheckpointError
from minimovq.quantize import EMAVectorQuantizer
from minimovq.vqgan import CONFIGS, VQGAN, from_config

from tiny_configs import DD, TINY  # tests/tiny_configs.py


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VQGAN(**TINY)


def images(*shape):
    return torch.rand(*shape) * 2 - 1


def test_f16_1024_params_and_keys():
    with torch.device("meta"):
        m = VQGAN.from_config("vqgan_imagenet_f16_1024")
    sd = m.state_dict()
    assert sum(p.numel() for p in m.parameters()) == 72_141_699
    assert len(sd) == 343
    keys = list(sd)
    tops = [k.split(".")[0] for k in keys]
    assert tops == sorted(tops, key=["encoder", "decoder", "quantize", "quant_conv", "post_quant_conv"].index)
    assert sd["quantize.embedding.weight"].shape == (1024, 256)
    assert sd["quant_conv.weight"].shape == (256, 256, 1, 1)
    assert keys[-4:] == ["quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"]
    for k in ("encoder.down.4.attn.1.proj_out.weight", "encoder.down.3.downsample.conv.weight",
              "encoder.mid.attn_1.q.weight", "decoder.up.4.attn.2.norm.weight", "decoder.up.0.block.2.conv2.bias",
              "decoder.up.1.upsample.conv.weight", "decoder.up.3.block.0.nin_shortcut.weight",
              "decoder.up.1.block.0.nin_shortcut.weight"):
        assert k in sd, k
    assert "decoder.up.2.block.0.nin_shortcut.weight" not in sd
    assert "encoder.down.4.downsample.conv.weight" not in sd and "decoder.up.0.upsample.conv.weight" not in sd
    assert sd["decoder.up.0.block.0.conv1.weight"].shape == (128, 128, 3, 3)  # up.0: highest resolution, ch·1
    assert sd["decoder.conv_in.weight"].shape == (512, 256, 3, 3)


def test_lesson_configs_build_and_run():
    for name in ("tiny", "small", "base"):
        cfg = CONFIGS[name]["ddconfig"]
        m = from_config(name)
        f = m.downsample_factor
        x = images(1, 3, cfg["resolution"], cfg["resolution"])
        if name == "tiny":
            x_hat, loss, _ = m(x)
            assert x_hat.shape == x.shape and loss.ndim == 0
        assert f == 2 ** (len(cfg["ch_mult"]) - 1)
    with pytest.raises(ValueError, match="unknown config"):
        from_config("huge")


def test_encode_decode_shapes_and_decode_indices_any_grid(model):
    x = images(3, 3, 16, 24)
    z_q, loss, idx = model.encode(x)
    assert z_q.shape == (3, 8, 8, 12) and idx.shape == (3, 8, 12) and loss.ndim == 0
    torch.testing.assert_close(model.decode_indices(idx), model.decode(z_q))
    # a batch and grid never seen in training
    idx2 = torch.randint(0, 32, (5, 3, 7))
    assert model.decode_indices(idx2).shape == (5, 3, 6, 14)
    assert model.decode_indices(idx2[:1].int()).shape == (1, 3, 6, 14)


def test_forward_gradients_reach_encoder(model):
    x = images(2, 3, 16, 16)
    x_hat, loss, _ = model(x)
    assert x_hat.shape == x.shape
    (F.mse_loss(x_hat, x) + loss).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through
    assert model.quantize.embedding.weight.grad.abs().sum() > 0  # codebook loss


def test_legacy_loss_value_and_quantizer_in_fp32():
    torch.manual_seed(0)
    new, old = VQGAN(**TINY), VQGAN(**TINY, legacy=True)
    old.load_state_dict(new.state_dict())
    x = images(2, 3, 16, 16)
    h = new.quant_conv(new.encoder(x))
    quant, loss_new, _ = new.encode(x)
    _, loss_old, _ = old.encode(x)
    mse = F.mse_loss(quant, h)
    torch.testing.assert_close(loss_new, 1.25 * mse)
    torch.testing.assert_close(loss_old, 1.25 * mse)
    # legacy=True is taming's placement of β: the encoder output gets the full pull, 2(h − z_q)/N
    for m, weight in ((old, 1.0), (new, 0.25)):
        h = m.quant_conv(m.encoder(x)).detach().requires_grad_()
        z_q, loss, _ = m.quantize(h)
        (g,) = torch.autograd.grad(loss, h)
        torch.testing.assert_close(g, weight * 2 * (h - z_q).detach() / h.numel())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quant, loss, _ = new.encode(x)
        x_hat = new.decode(quant)
    assert quant.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(x_hat).all()


def test_bad_input_raises_value_error(model):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(images(3, 16, 16))
    with pytest.raises(ValueError, match="C=3"):
        model(images(2, 1, 16, 16))
    with pytest.raises(ValueError, match="multiples of 2"):
        model(images(2, 3, 15, 16))
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        model.decode(torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="double_z"):
        VQGAN(dict(DD, double_z=True), 32, 8)


def test_multichannel_and_custom_quantizer():
    m = VQGAN(**TINY, groups=4)
    assert m.quantize.embedding.weight.shape == (32, 2)
    quant, _, idx = m.encode(images(2, 3, 16, 16))
    assert idx.shape == (2, 8, 8, 4)
    torch.testing.assert_close(m.decode_indices(idx), m.decode(quant))
    ema = VQGAN(**TINY, quantizer=EMAVectorQuantizer(32, 8))
    assert isinstance(ema.quantize, EMAVectorQuantizer)
    assert ema(images(1, 3, 16, 16))[0].shape == (1, 3, 16, 16)


def _fabricate_taming_ckpt(path, model):
    """A file in taming's Lightning layout: {"state_dict": model + loss.*}, plus trainer metadata."""
    sd = dict(model.state_dict())
    sd["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 64, 1, 1)
    torch.save({"state_dict": sd, "global_step": 10, "epoch": 1}, path)


def test_from_pretrained_loads_taming_layout(tmp_path, model):
    path = tmp_path / "last.ckpt"
    _fabricate_taming_ckpt(path, model)
    loaded = VQGAN.from_pretrained(TINY, checkpoint_path=path)
    assert not loaded.training and loaded.quantize.legacy
    x = images(2, 3, 16, 16)
    model.eval()
    torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_from_pretrained_errors(tmp_path, model):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        VQGAN.from_pretrained(TINY, checkpoint_path=tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights_only"):
        VQGAN.from_pretrained(TINY, checkpoint_path=bad)
    path = tmp_path / "last.ckpt"
    _fabricate_taming_ckpt(path, model)
    with pytest.raises(ValueError, match="shape mismatches: quantize.embedding.weight"):
        VQGAN.from_pretrained(dict(TINY, n_embed=64), checkpoint_path=path)
    with pytest.raises(ValueError, match="missing keys: encoder.down.0.attn"):
        VQGAN.from_pretrained(dict(TINY, ddconfig=dict(DD, attn_resolutions=(16, 8))), checkpoint_path=path)


def test_from_pretrained_one_convention(tmp_path):
    """VQGAN and MoVQ both take a release name first and the file as checkpoint_path=."""
    with pytest.raises(ValueError, match="release name first.*checkpoint_path="):
        VQGAN.from_pretrained(str(tmp_path / "last.ckpt"))
    with pytest.raises(CheckpointError, match="needs checkpoint_path=.*taming-transformers"):
        VQGAN.from_pretrained("vqgan_imagenet_f16_1024")
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        VQGAN.from_pretrained("nope", checkpoint_path=tmp_path / "x.ckpt")


def test_overfit_one_batch(overfit):
    torch.manual_seed(0)
    m = VQGAN(dict(DD, attn_resolutions=()), n_embed=32, embed_dim=8)
    x = F.interpolate(images(2, 3, 4, 4), size=(16, 16), mode="bilinear", align_corners=False)  # smooth images

    def loss_fn():
        x_hat, vq_loss, _ = m(x)
        rec = F.mse_loss(x_hat, x)
        return rec + vq_loss, rec

    rec = overfit(loss_fn, m.parameters(), steps=60, lr=1e-3)
    assert rec[-1] < rec[0] / 10, rec[::10]


def test_summary_uses_torchinfo(model, capsys):
    pytest.importorskip("torchinfo")
    stats = model.summary(depth=2, verbose=0)
    assert stats.total_params == sum(p.numel() for p in model.parameters())
    assert "Kernel Shape" in str(stats)
