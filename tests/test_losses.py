"""VQGANLoss: taming's numbers (computed by hand from the recipe), gating, edge cases, SBER recipe, AMP."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minimovq.losses import VQGANLoss, adaptive_weight, hinge_d_loss, vanilla_d_loss
from minimovq.lpips import LPIPS


@pytest.fixture(scope="module")
def lpips():
    return LPIPS(pretrained=False)


class TinyDecoder(nn.Module):
    """x̂ = conv_out(h): stands in for the VQGAN decoder and its last layer."""

    def __init__(self):
        super().__init__()
        self.conv_out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, h):
        return self.conv_out(h)


def _setup(seed=0, size=16):
    torch.manual_seed(seed)
    dec = TinyDecoder()
    h = torch.randn(2, 8, size, size)
    x = torch.rand(2, 3, size, size) * 2 - 1
    cb = torch.tensor(0.37, requires_grad=True)
    return dec, h, x, cb


def _loss(lpips, **kw):
    torch.manual_seed(1)
    kw = {"disc_num_layers": 2, "disc_ndf": 8, **kw}
    return VQGANLoss(kw.pop("disc_start", 5), perceptual=lpips, **kw)


@pytest.mark.parametrize("pixel", ["l1", "l2"])
def test_generator_loss_equals_taming_by_hand(lpips, pixel):
    loss_mod = _loss(lpips, codebook_weight=1.5, disc_weight=0.8, perceptual_weight=0.7, disc_factor=0.9,
                     pixel_loss=pixel)
    dec, h, x, cb = _setup()
    x_hat = dec(h)
    loss, logs = loss_mod.generator_loss(cb, x, x_hat, step=5, last_layer=dec.conv_out.weight)

    # by hand, facts §6
    pix = (x - x_hat).abs() if pixel == "l1" else (x - x_hat) ** 2
    nll = (pix + 0.7 * lpips(x, x_hat)).mean()
    logits_fake = loss_mod.discriminator(x_hat)  # train-mode BN: depends on this batch only
    g = -logits_fake.mean()
    (gn,) = torch.autograd.grad(nll, dec.conv_out.weight, retain_graph=True)
    (gg,) = torch.autograd.grad(g, dec.conv_out.weight, retain_graph=True)
    lam = torch.clamp(gn.norm() / (gg.norm() + 1e-4), 0, 1e4) * 0.8
    expected = nll + lam * 0.9 * g + 1.5 * cb
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["nll_loss"], nll.detach())
    torch.testing.assert_close(logs["g_loss"], g.detach())
    torch.testing.assert_close(logs["d_weight"], lam.detach())
    assert logs["disc_factor"].item() == pytest.approx(0.9)
    assert all(not v.requires_grad for v in logs.values())
    # the generator's loss reaches the decoder and the codebook
    loss.backward()
    assert dec.conv_out.weight.grad.abs().sum() > 0 and cb.grad.item() == pytest.approx(1.5)


def test_disc_start_gates_the_gan_terms(lpips):
    loss_mod = _loss(lpips, disc_start=100, disc_weight=0.8)
    dec, h, x, cb = _setup()
    x_hat = dec(h)
    loss, logs = loss_mod.generator_loss(cb, x, x_hat, step=99, last_layer=dec.conv_out.weight)
    nll = ((x - x_hat).abs() + lpips(x, x_hat)).mean()
    torch.testing.assert_close(loss, nll + cb)
    assert logs["disc_factor"].item() == 0 and logs["d_weight"].item() == 0
    assert math.isfinite(logs["g_loss"].item())
    d_loss, d_logs = loss_mod.discriminator_loss(x, x_hat, step=99)
    assert d_loss.item() == 0 and d_logs["disc_factor"].item() == 0
    d_loss.backward()  # still connected to D, so the two-optimizer loop can call backward
    assert loss_mod.discriminator.main[0].weight.grad is not None


@pytest.mark.parametrize("kind", ["hinge", "vanilla"])
def test_discriminator_loss_runs_real_and_fake_separately(lpips, kind):
    loss_mod = _loss(lpips, disc_loss=kind, disc_factor=0.5)
    dec, h, x, cb = _setup()
    x_hat = dec(h)
    loss, logs = loss_mod.discriminator_loss(x, x_hat, step=5)
    D = loss_mod.discriminator
    real, fake = D(x), D(x_hat.detach())
    if kind == "hinge":
        expected = 0.5 * 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    else:
        expected = 0.5 * 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["logits_real"], real.mean().detach())
    torch.testing.assert_close(logs["logits_fake"], fake.mean().detach())
    # one concatenated batch would give other numbers: BatchNorm would mix real and fake statistics
    both = D(torch.cat([x, x_hat.detach()]))
    fn = hinge_d_loss if kind == "hinge" else vanilla_d_loss
    assert not torch.allclose(0.5 * fn(both[:2], both[2:]), expected)
    loss.backward()
    assert dec.conv_out.weight.grad is None  # x̂ is detached inside


def test_hinge_and_vanilla_by_hand():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor(0.5 * ((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3)))
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    v = 0.5 * ((sp(-2) + sp(-0.5) + sp(1)) / 3 + (sp(-2) + sp(0) + sp(1)) / 3)
    torch.testing.assert_close(vanilla_d_loss(real, fake), torch.tensor(v))


def test_adaptive_weight_clamps_and_survives_zero_or_missing_gradients():
    w = nn.Parameter(torch.randn(4, 3))
    nll = (w ** 2).sum()
    assert adaptive_weight(nll, 1e-9 * w.sum(), w).item() == pytest.approx(1e4)          # clamp
    assert adaptive_weight(nll, 0 * w.sum(), w).item() == pytest.approx(1e4)             # zero grad
    assert adaptive_weight(nll, torch.tensor(3.0), w).item() == pytest.approx(1e4)       # no grad at all
    assert adaptive_weight(0 * w.sum(), 0 * w.sum(), w).item() == 0.0                    # both zero
    other = nn.Parameter(torch.randn(3))
    assert adaptive_weight(nll, other.sum(), w).item() == pytest.approx(1e4)             # grad is None
    lam = adaptive_weight(nll, (3 * w).sum(), w)
    torch.testing.assert_close(lam, (2 * w).norm().detach() / (torch.full((4, 3), 3.0).norm() + 1e-4))
    assert not lam.requires_grad
    nll.backward()  # the graph was retained for the real backward
    assert w.grad is not None


def test_adaptive_weight_at_zero_disc_factor_and_in_no_grad(lpips):
    loss_mod = _loss(lpips, disc_start=0, disc_factor=0.0)
    dec, h, x, cb = _setup()
    loss, logs = loss_mod.generator_loss(cb, x, dec(h), step=10, last_layer=None)  # never needs it
    assert torch.isfinite(loss) and logs["d_weight"].item() == 0
    loss_mod = _loss(lpips, disc_start=0)
    with torch.no_grad():  # validation: no gradients, λ = 0 as in taming
        loss, logs = loss_mod.generator_loss(cb, x, dec(h), step=10, last_layer=dec.conv_out.weight)
    assert torch.isfinite(loss) and logs["d_weight"].item() == 0
    with pytest.raises(ValueError, match="last_layer"):
        loss_mod.generator_loss(cb, x, dec(h), step=10)


def test_logs_hold_the_issue_keys(lpips):
    loss_mod = _loss(lpips, disc_start=0)
    dec, h, x, cb = _setup()
    x_hat = dec(h)
    _, g_logs = loss_mod.generator_loss(cb, x, x_hat, step=0, last_layer=dec.conv_out.weight)
    _, d_logs = loss_mod.discriminator_loss(x, x_hat, step=0)
    assert {"nll_loss", "g_loss", "d_weight", "disc_factor", "logits_fake"} <= set(g_logs)
    assert {"disc_loss", "disc_factor", "logits_real", "logits_fake"} <= set(d_logs)
    assert {"nll_loss", "g_loss", "d_weight", "disc_factor", "logits_real", "logits_fake"} <= {**g_logs, **d_logs}.keys()


def test_sber_movqgan_recipe(lpips):
    torch.manual_seed(0)
    full = VQGANLoss.sber_movqgan(perceptual=lpips)
    assert sum(p.numel() for p in full.discriminator.parameters()) == 663_361
    assert (full.pixel_loss_name, full.perceptual_weight, full.disc_weight, full.disc_start) == ("l2", 0.1, 0.1, 0)
    assert not full.use_adaptive_weight
    small = VQGANLoss.sber_movqgan(perceptual=lpips, disc_ndf=8)
    dec, h, x, cb = _setup()
    x_hat = dec(h)
    loss, logs = small.generator_loss(cb, x, x_hat, step=0)  # no last_layer needed
    expected = ((x - x_hat) ** 2).mean() + 0.1 * lpips(x, x_hat).mean() - 0.1 * small.discriminator(x_hat).mean() + cb
    torch.testing.assert_close(loss, expected)
    assert logs["d_weight"].item() == pytest.approx(0.1)
    d_loss, _ = small.discriminator_loss(x, x_hat, step=0)
    assert d_loss.item() > 0


def test_disc_warmup_ramps_the_generator_side_only(lpips):
    loss_mod = _loss(lpips, disc_start=10, disc_warmup_steps=4)
    assert loss_mod.gan_factors(9) == (0.0, 0.0)
    assert loss_mod.gan_factors(10) == (0.25, 1.0)
    assert loss_mod.gan_factors(12) == (0.75, 1.0)
    assert loss_mod.gan_factors(13) == (1.0, 1.0) == loss_mod.gan_factors(1000)


def test_bad_arguments(lpips):
    with pytest.raises(ValueError, match="disc_loss"):
        VQGANLoss(0, disc_loss="wgan", perceptual=lpips)
    with pytest.raises(ValueError, match="pixel_loss"):
        VQGANLoss(0, pixel_loss="l3", perceptual=lpips)
    assert VQGANLoss(0, perceptual_weight=0.0, disc_ndf=8).perceptual_loss is None


def test_bfloat16_autocast_losses_are_finite(lpips):
    loss_mod = _loss(lpips, disc_start=0)
    dec, h, x, cb = _setup()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat = dec(h)
        assert x_hat.dtype == torch.bfloat16
        loss, logs = loss_mod.generator_loss(cb, x, x_hat, step=0, last_layer=dec.conv_out.weight)
        d_loss, _ = loss_mod.discriminator_loss(x, x_hat, step=0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(d_loss)
    assert all(torch.isfinite(v) for v in logs.values())
    loss.backward()
    assert torch.isfinite(dec.conv_out.weight.grad).all()


def test_float16_losses_are_finite(lpips):
    loss_mod = _loss(lpips, disc_start=0)
    dec, h, x, cb = _setup()
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            x_hat = dec(h)
            loss, logs = loss_mod.generator_loss(cb, x, x_hat * 20, step=0, last_layer=dec.conv_out.weight)
            d_loss, _ = loss_mod.discriminator_loss(x, x_hat, step=0)
    except RuntimeError as e:  # an older torch without fp16 CPU kernels
        pytest.skip(f"no float16 autocast on this CPU build: {e}")
    assert x_hat.dtype == torch.float16
    assert torch.isfinite(loss) and torch.isfinite(d_loss) and all(torch.isfinite(v) for v in logs.values())


def test_two_optimizer_training_through_the_trainer(lpips):
    from minimovq.train import Trainer

    torch.manual_seed(0)
    ae = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
    loss_mod = _loss(lpips, disc_start=3)
    opt_g = torch.optim.Adam(ae.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_mod.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.9))
    trainer = Trainer(nn.ModuleDict({"model": ae, "loss": loss_mod}), {"g": opt_g, "d": opt_d}, grad_clip=1.0)
    data = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(3)]

    def step_fn(x, step):
        x_hat = ae(x)
        loss_g, g_logs = loss_mod.generator_loss(torch.zeros(()), x, x_hat, step, last_layer=ae[2].weight)
        loss_d, d_logs = loss_mod.discriminator_loss(x, x_hat, step)
        return {"g": loss_g, "d": loss_d, **g_logs, **d_logs}

    hist = trainer.fit(data, step_fn, steps=6, progress=False)
    assert hist["disc_factor"] == [0, 0, 0, 1, 1, 1]
    assert all(math.isfinite(v) for k in ("g", "d", "d_weight", "logits_real") for v in hist[k])
    assert hist["d"][:3] == [0, 0, 0] and hist["d"][3] > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_vqgan_and_loss_under_cpu_autocast(lpips, dtype):
    """The real model: quantizer in fp32, LPIPS norm in fp32, losses finite in bf16 and fp16."""
    vqgan = pytest.importorskip("minimovq.vqgan")
    torch.manual_seed(0)
    model = vqgan.VQGAN.from_config("tiny")
    loss_mod = _loss(lpips, disc_start=0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    try:
        with torch.autocast("cpu", dtype=dtype):
            x_hat, codebook_loss, _ = model(x)
            loss_g, g_logs = loss_mod.generator_loss(codebook_loss, x, x_hat, 0, last_layer=model.last_layer)
            loss_d, d_logs = loss_mod.discriminator_loss(x, x_hat, 0)
    except RuntimeError as e:
        pytest.skip(f"no {dtype} autocast for these CPU kernels: {e}")
    assert codebook_loss.dtype == torch.float32
    for v in [loss_g, loss_d, *g_logs.values(), *d_logs.values()]:
        assert torch.isfinite(v).all()
    loss_g.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_training_steps_on_cuda():
    """fp16 autocast + GradScaler on a GPU (what a T4 runs): a few steps, every loss finite."""
    from minimovq.train import Trainer
    from minimovq.vqgan import VQGAN

    torch.manual_seed(0)
    model = VQGAN.from_config("tiny").cuda()
    loss_mod = VQGANLoss(2, disc_num_layers=2, perceptual=LPIPS(pretrained=False)).cuda()
    opt_g = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_mod.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))
    trainer = Trainer(nn.ModuleDict({"vqgan": model, "d": loss_mod.discriminator}), {"g": opt_g, "d": opt_d},
                      device="cuda", amp=True)
    trainer.dtype = torch.float16  # force fp16 (bf16 GPUs would pick bf16), as on a T4
    trainer.scaler = torch.amp.GradScaler("cuda")
    data = [torch.rand(4, 3, 32, 32) * 2 - 1 for _ in range(2)]

    def step_fn(x, step):
        with trainer.autocast():
            x_hat, q, _ = model(x)
            loss_g, logs = loss_mod.generator_loss(q, x, x_hat, step, last_layer=model.last_layer)
            loss_d, d_logs = loss_mod.discriminator_loss(x, x_hat, step)
        assert x_hat.dtype == torch.float16
        return {"g": loss_g, "d": loss_d, **d_logs, **logs}

    hist = trainer.fit(data, step_fn, steps=5, progress=False)
    assert all(math.isfinite(v) for vals in hist.values() for v in vals)
