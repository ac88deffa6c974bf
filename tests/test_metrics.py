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
