"""Reconstruction metrics, with their definitions spelled out.

All functions take image batches (B, C, H, W) in [-1, 1] (the course's convention) and return one value per
image (B,) unless noted. They are computed in float32 on the images' device.

* **PSNR** = 10·log10(MAX² / MSE), where MSE is the mean over C, H, W and MAX is the data range. We report PSNR
  on images mapped to [0, 1] (MAX = 1), the common convention, so numbers compare with papers.
* **SSIM** (Wang et al. 2004): a Gaussian window of size 11 and σ = 1.5, constants C1 = (0.01·L)² and
  C2 = (0.03·L)² with L = 1 (images in [0, 1]); "valid" filtering (no padding); the SSIM map is averaged over
  space and channels. This is the definition used by scikit-image with ``gaussian_weights=True``.
  Images smaller than the window use a window that fits.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from einops import rearrange


def _to01(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image (B,), for images in [-1, 1] (measured in [0, 1]): 10·log10(1 / MSE)."""
    mse = (_to01(x_hat) - _to01(x)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # (size, size)


def ssim(x_hat: torch.Tensor, x: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image (B,), for images in [-1, 1] (measured in [0, 1]).

    SSIM(a, b) = (2·μa·μb + C1)(2·σab + C2) / ((μa² + μb² + C1)(σa² + σb² + C2)), with local statistics
    from a Gaussian window; averaged over the valid region and over channels.
    """
    a, b = _to01(x_hat), _to01(x)
    C = a.shape[1]
    size = min(window_size, a.shape[-1], a.shape[-2])
    size -= (size + 1) % 2  # keep it odd
    w = _gaussian_window(size, sigma, a.device, a.dtype).expand(C, 1, size, size)
    filt = lambda t: F.conv2d(t, w, groups=C)  # noqa: E731  (B, C, H', W')
    mu_a, mu_b = filt(a), filt(b)
    # Sample covariance correction as in scikit-image (use_sample_covariance=False with gaussian weights).
    saa = filt(a * a) - mu_a ** 2
    sbb = filt(b * b) - mu_b ** 2
    sab = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.flatten(1).mean(1)


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-image high-frequency energy (B,): the mean square of the image minus its 3×3 box blur.

    HF(x) = mean_{c,h,w} (x − box3(x))², box3 averaging only the pixels inside the image at the borders.
    The ratio HF(x̂) / HF(x) is the lessons' *sharpness*: below 1 a reconstruction is blurred, far above 1 it
    invents detail (noise, ringing) that the input does not have.
    """
    x = x.float()
    return (x - F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)).pow(2).flatten(1).mean(1)


def radial_power_spectrum(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images' mean power per spatial frequency: what `sharpness` sums up, resolved by frequency.

    P(k) = mean over images and over the frequencies (u, v) with round(n·|(u, v)|) = k of |FFT2(g − mean g)|² / (H·W),
    g the image's grey level (the mean of its channels), n = min(H, W), k = 1 … n/2: rings of width 1/n cycles
    per pixel, up to the Nyquist limit 0.5 (the corners beyond it are left out, the mean is not counted).
    White noise of unit variance has P = 1 everywhere (Parseval).

    Args:
        x: (B, C, H, W) images.
    Returns:
        ``(freqs, power)``, both (n/2,): the rings' frequencies k/n in cycles per pixel and the mean power in each.
        Compare two sets of images by the ratio of their powers: below 1 at high frequencies is blur, above 1 is
        invented detail.
    """
    if x.dim() != 4:
        raise ValueError(f"radial_power_spectrum expects images (B, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    n = min(h, w)
    g = x.float().mean(dim=1)                                                  # (B, H, W)
    g = g - g.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(g).abs().pow(2).mean(0) / (h * w)                   # (H, W)
    fy = torch.fft.fftfreq(h, device=x.device)[:, None]
    fx = torch.fft.fftfreq(w, device=x.device)[None, :]
    ring = ((fy ** 2 + fx ** 2).sqrt() * n).round().long()                     # (H, W): k of each frequency
    keep = (ring >= 1) & (ring <= n // 2)
    total = torch.zeros(n // 2 + 1, device=x.device).index_add_(0, ring[keep], power[keep])
    count = torch.zeros(n // 2 + 1, device=x.device).index_add_(0, ring[keep], torch.ones_like(power[keep]))
    freqs = torch.arange(1, n // 2 + 1, device=x.device) / n
    return freqs, total[1:] / count[1:].clamp_min(1)


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets f1 (n1, d) and f2 (n2, d) — the formula of FID:

    d² = ‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2·Tr((Σ1 Σ2)^½)

    computed in float64; Tr((Σ1 Σ2)^½) = Σ √λ(Σ1^½ Σ2 Σ1^½), a symmetric matrix with the same eigenvalues.
    """
    f1, f2 = f1.double(), f2.double()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    vals, vecs = torch.linalg.eigh(s1)
    root1 = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    tr_sqrt = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_sqrt).item()


@torch.no_grad()
def smooth_regions(x: torch.Tensor, f: int, threshold: float = 0.15) -> torch.Tensor:
    """Pixels of x (B, C, H, W) in [-1, 1] whose neighbourhood (a (2f+1)² window) holds no edge or texture:
    every neighbouring pixel step stays below ``threshold``. Returns a bool mask (B, 1, H, W)."""
    x = x.float()
    step = torch.zeros_like(x[:, :1])  # (B, 1, H, W): the largest step to the right or below, over channels
    step[..., :, :-1] = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1, keepdim=True)
    step[..., :-1, :] = torch.maximum(step[..., :-1, :], (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1, keepdim=True))
    return F.max_pool2d(step, 2 * f + 1, stride=1, padding=f) < threshold


@torch.no_grad()
def grid_artifact(x_hat: torch.Tensor, x: torch.Tensor, f: int, threshold: float = 0.15) -> dict[str, Any]:
    """How much of the reconstruction error in smooth regions follows the latent grid (cells of f×f pixels).

    x_hat, x: (B, C, H, W) in [-1, 1] (the reconstruction first, like every metric here), H and W multiples of f. Returns a dict with
      * ``phase``: (f, f), the mean |x̂ − x| in smooth regions at each position *inside* a latent cell. Error
        unrelated to the grid gives a flat map; repeated, blocky patches give a bowl (large at the cell borders).
      * ``score``: std / mean of ``phase`` — 0 when the error ignores the grid.
      * ``blockiness``: the mean step of x̂ across cell borders over its mean step inside cells, in smooth
        regions, divided by the same ratio for x. 1 = no seams at the code borders; > 1 = blocky.
      * ``smooth_fraction``: the share of pixels counted as smooth.
    """
    mask = smooth_regions(x, f, threshold).float()  # (B, 1, H, W)
    err = (x_hat.float() - x.float()).abs().mean(1, keepdim=True)  # (B, 1, H, W)
    fold = "b 1 (h i) (w j) -> i j (b h w)"  # position (i, j) inside each f×f cell
    phase = (rearrange(err * mask, fold, i=f, j=f).sum(-1)
             / rearrange(mask, fold, i=f, j=f).sum(-1).clamp_min(1))  # (f, f)

    def steps(img: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Sums of horizontal steps |img[j+1] − img[j]| over smooth pixel pairs: (across borders, count, inside, count)."""
        step = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(1, keepdim=True)  # (B, 1, H, W-1)
        pair = m[..., :, 1:] * m[..., :, :-1]
        border = (torch.arange(1, img.shape[-1], device=img.device) % f == 0).float()  # col j -> j+1 crosses
        return ((step * pair * border).sum(), (pair * border).sum(),
                (step * pair * (1 - border)).sum(), (pair * (1 - border)).sum())

    def seams(img: torch.Tensor) -> torch.Tensor:
        """Mean step across cell borders / mean step inside cells, both axes pooled (1e-3: below one 8-bit level)."""
        h = steps(img, mask)
        v = steps(img.transpose(-1, -2), mask.transpose(-1, -2))
        across = (h[0] + v[0]) / (h[1] + v[1]).clamp_min(1)
        inside = (h[2] + v[2]) / (h[3] + v[3]).clamp_min(1)
        return across.clamp_min(1e-3) / inside.clamp_min(1e-3)

    blockiness = seams(x_hat.float()) / seams(x.float())
    return {"phase": phase.cpu(), "score": float(phase.std() / phase.mean().clamp_min(1e-8)),
            "blockiness": float(blockiness), "smooth_fraction": float(mask.mean())}


def evaluate_reconstruction(reconstruct: Callable[[torch.Tensor], torch.Tensor], loader: Iterable, *,
                            device: str | torch.device = "cpu", lpips=None, max_batches: int | None = None
                            ) -> dict[str, float]:
    """Evaluate a model over a whole split.

    Args:
        reconstruct: ``images (B,C,H,W) -> reconstructions`` (e.g. ``lambda x: model(x)[0]``).
        loader: yields image batches (or ``(images, labels)``).
        lpips: an optional LPIPS module; adds the mean ``lpips``.
    Returns:
        ``{"psnr", "ssim", "mse", ["lpips"], "n"}``: means over every image of the split.
    """
    sums: dict[str, float] = {"psnr": 0.0, "ssim": 0.0, "mse": 0.0}
    if lpips is not None:
        sums["lpips"] = 0.0
    n = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(device)
        x_hat = reconstruct(x).float().clamp(-1, 1)
        sums["psnr"] += psnr(x_hat, x).sum().item()
        sums["ssim"] += ssim(x_hat, x).sum().item()
        sums["mse"] += (x_hat - x).pow(2).flatten(1).mean(1).sum().item()
        if lpips is not None:
            sums["lpips"] += lpips(x_hat, x).flatten().sum().item()
        n += x.shape[0]
    if n == 0:
        raise ValueError("the loader yielded no images to evaluate")
    out = {k: v / n for k, v in sums.items()}
    out["n"] = n
    return out


def format_table(rows: dict[str, dict[str, float]], keys: Iterable[str] | None = None, digits: int = 3) -> str:
    """Render ``{row_name: {metric: value}}`` as a fixed-width text table (printed in notebooks and notes)."""
    rows = dict(rows)
    keys = list(keys or next(iter(rows.values())).keys())
    w0 = max(len(r) for r in rows) + 2
    head = "".join(f"{k:>12}" for k in keys)
    lines = [f"{'':<{w0}}{head}"]
    for name, vals in rows.items():
        cells = "".join(f"{vals.get(k, float('nan')):>12.{digits}f}" if isinstance(vals.get(k), float)
                        else f"{str(vals.get(k, '')):>12}" for k in keys)
        lines.append(f"{name:<{w0}}{cells}")
    return "\n".join(lines)
