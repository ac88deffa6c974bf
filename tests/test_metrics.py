import pytest
import torch

from minimovq.metrics import evaluate_reconstruction, format_table, psnr, ssim


def test_psnr_known_value():
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full_like(x, 0.2)  # 0.1 in [0, 1] -> MSE 0.01 -> 20 dB
    assert psnr(y, x).item() == pytest.approx(20.0, abs=1e-4)


def test_ssim_identity_and_matches_scikit_image():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    skm = pytest.importorskip("skimage.metrics")
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    a = ((y[0] + 1) / 2).permute(1, 2, 0).double().numpy()
    b = ((x[0] + 1) / 2).permute(1, 2, 0).double().numpy()
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0, channel_axis=2)
    assert ssim(y, x)[0].item() == pytest.approx(ref, abs=1e-5)


def test_evaluate_over_split():
    data = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(3)]
    out = evaluate_reconstruction(lambda x: x, data)
    assert out["n"] == 12 and out["mse"] == 0 and out["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert "psnr" in format_table({"identity": out})


def test_high_frequency_energy_is_zero_on_flat_images_and_per_image():
    from minimovq.metrics import high_frequency_energy

    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(high_frequency_energy(flat), torch.zeros(2), atol=1e-7)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1  # ±1 checkerboard
    x = torch.stack([flat[0], checker.expand(3, 8, 8)])
    hf = high_frequency_energy(x)
    assert hf.shape == (2,) and hf[0] < 1e-10 and hf[1] > 0.5


def test_radial_power_spectrum_parseval_white_noise_and_blur():
    import torch.nn.functional as F

    from minimovq.metrics import radial_power_spectrum

    torch.manual_seed(0)
    noise = torch.randn(64, 1, 32, 32)
    freqs, power = radial_power_spectrum(noise)
    assert freqs.shape == power.shape == (16,) and freqs[0] == 1 / 32 and freqs[-1] == 0.5
    assert torch.allclose(power, torch.ones(16), atol=0.15)          # white noise: flat, and unit power (Parseval)
    blurred = F.avg_pool2d(noise, 3, 1, 1, count_include_pad=False)
    ratio = radial_power_spectrum(blurred)[1] / power
    assert ratio[8:].min() < 0.1 < 0.9 < ratio[0]                          # a blur removes high frequencies, not low
    flat = torch.full((2, 3, 8, 8), 0.4)
    assert radial_power_spectrum(flat)[1].abs().max() < 1e-10          # the mean (DC) is not counted
    with pytest.raises(ValueError, match="B, C, H, W"):
        radial_power_spectrum(torch.zeros(3, 8, 8))


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    from minimovq.metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + 1  # σ = 2, μ = 1
    # ‖μ1 − μ2‖² + Σ (σ1² + σ2² − 2 σ1 σ2) = 3·1 + 3·(1 + 4 − 4) = 6
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
