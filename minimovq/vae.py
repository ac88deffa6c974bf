"""Lesson 1: the variational autoencoder (Kingma & Welling 2014).

The VAE maximises the evidence lower bound (ELBO) on log p(x):

    log p(x) ≥ E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ p(z)),   q(z|x) = N(μ(x), diag σ²(x)),  p(z) = N(0, I)

With a Gaussian decoder of fixed variance, −log p(x|z) is (up to constants) a sum of squared errors, so the
loss we minimise per image is ``Σ_pixels (x̂ − x)² + β·KL`` (β = 1 is the ELBO; β ≠ 1 is the β-VAE).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .validate import check_images


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Sample z ~ N(mu, exp(logvar)) differentiably.

    z = μ + σ·ε, with σ = exp(½·logvar) and ε ~ N(0, I) drawn fresh with μ's shape; gradients flow to μ and
    logvar because the randomness sits in ε alone.
    """
    std = torch.exp(0.5 * logvar)
    eps = torch.randn_like(std)
    return mu + std * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample (B,), summed over every non-batch dimension.

    KL = ½ · Σ (μ² + σ² − 1 − log σ²)
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1)


def elbo_loss(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              beta: float = 1.0) -> torch.Tensor:
    """The negative ELBO (up to constants), averaged over the batch.

    loss = mean_b [ Σ_pixels (x̂ − x)² + β·KL(q(z|x_b) ‖ N(0, I)) ]
    """
    rec = (x_hat - x).pow(2).flatten(1).sum(1)  # (B,)
    return (rec + beta * kl_divergence(mu, logvar)).mean()


@dataclass
class VAEConfig:
    in_channels: int = 3    # image channels
    image_size: int = 32    # H = W, a multiple of 8
    width: int = 32         # channels of the first conv; doubled at each of the 3 downsamplings
    latent_dim: int = 32    # size of z


class VAE(nn.Module):
    """A small convolutional VAE: three stride-2 convs down to (4w, H/8, W/8), a linear map to (μ, log σ²),
    and the mirror image with transposed convs back up.

    ``encode(x) -> (mu, logvar)``, ``decode(z) -> x_hat``, ``forward(x) -> (x_hat, mu, logvar)``,
    ``sample(n) -> images``. Images are (B, C, H, W) in [-1, 1].
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, width: int = 32, latent_dim: int = 32):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (three stride-2 convs), got {image_size}")
        self.config = VAEConfig(in_channels, image_size, width, latent_dim)
        w, s = width, image_size // 8
        self.enc = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.SiLU(),
        )
        self.to_stats = nn.Linear(4 * w * s * s, 2 * latent_dim)  # -> [μ, log σ²]
        self.from_z = nn.Linear(latent_dim, 4 * w * s * s)
        self.dec = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(w, in_channels, 4, 2, 1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [-1, 1] -> (mu, logvar), each (B, latent_dim)."""
        c = self.config
        check_images(x, channels=c.in_channels, size=c.image_size, name="VAE input", dtype=self.to_stats.weight.dtype)
        h = rearrange(self.enc(x), "b c h w -> b (c h w)")
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite early in training

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> x_hat (B, C, H, W), the mean of the Gaussian decoder (not clamped)."""
        s = self.config.image_size // 8
        h = rearrange(self.from_z(z), "b (c h w) -> b c h w", h=s, w=s)
        return self.dec(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior z ~ N(0, I): (n, C, H, W)."""
        p = next(self.parameters())
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(z)


def vae_loss(model: VAE, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """One training step's losses: ``{"loss", "rec", "kl"}`` (rec and kl are per-image means)."""
    x_hat, mu, logvar = model(x)
    rec = (x_hat - x).pow(2).flatten(1).sum(1).mean()
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "mse": F.mse_loss(x_hat.detach(), x)}
