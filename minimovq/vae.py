"""Lesson 1: the variational autoencoder (Kingma & Welling 2014).

The VAE maximises the evidence lower bound (ELBO) on log p(x):

    log p(x) ≥ E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ p(z)),   q(z|x) = N(μ(x), diag σ²(x)),  p(z) = N(0, I)

With a Gaussian decoder of fixed variance, −log p(x|z) is (up to constants) a sum of squared errors, so the
loss we minimise per image is ``Σ_pixels (x̂ − x)² + β·KL`` (β = 1 is the ELBO; β ≠ 1 is the β-VAE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .outputs import QuantizerOutput
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


class GaussianBottleneck(nn.Module):
    """A continuous drop-in for a quantizer: the VAE's Gaussian posterior at every latent position.

    z_e (B, D, h, w) -> a 1×1 conv to (μ, log σ²), each (B, D, h, w) -> z = μ + σ·ε in training, z = μ in eval
    (the usual deterministic reconstruction). Returns ``QuantizerOutput(z_q=z, vq_loss=KL, indices=None)``, where
    the loss slot holds the *rate* KL(q(z|x) ‖ N(0, I)) in nats per image, averaged over the batch, **unweighted**:
    weigh it with β yourself (Lesson 2 sets β by dual ascent so that the KL meets a target rate). There are no
    indices: the code is continuous. With it, ``VQVAE(quantizer=GaussianBottleneck(D))`` is a VAE with the
    VQ-VAE's encoder and decoder, which compares the two latents at equal architecture.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.to_stats = nn.Conv2d(embed_dim, 2 * embed_dim, 1)

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        mu, logvar = self.to_stats(z_e).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = reparameterize(mu, logvar) if self.training else mu
        return QuantizerOutput(z, kl_divergence(mu.float(), logvar.float()).mean(), None)


class RateController:
    """Dual ascent on β so that the average rate meets a target (the constrained-VAE view of the β-VAE;
    Rezende & Viola 2018, "Taming VAEs"): after each step, log β ← log β + lr · (KL / target − 1).

    Too many nats raise β (the KL costs more), too few lower it. ``beta`` is the current value."""

    def __init__(self, target_nats: float, beta: float = 1.0, lr: float = 0.02, min_beta: float = 1e-6,
                 max_beta: float = 1e3):
        if target_nats <= 0:
            raise ValueError(f"target_nats must be > 0, got {target_nats}")
        self.target, self.lr, self.bounds = float(target_nats), float(lr), (min_beta, max_beta)
        self.beta = float(beta)

    def update(self, kl_nats: float) -> float:
        """Move β after a step whose mean KL was ``kl_nats``; return the new β."""
        kl_nats = float(kl_nats)
        if not math.isfinite(kl_nats):  # a diverged step says nothing about the rate: keep β (the loss shows it)
            return self.beta
        log_beta = math.log(self.beta) + self.lr * (kl_nats / self.target - 1.0)
        lo, hi = (math.log(b) for b in self.bounds)
        self.beta = math.exp(min(max(log_beta, lo), hi))
        return self.beta
