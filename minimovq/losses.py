"""The VQGAN training objective (taming's VQLPIPSWithDiscriminator) and SBER-MoVQGAN's variant.

Generator (the autoencoder), with x̂ the reconstruction and D the PatchGAN::

    nll    = mean( |x − x̂| + perceptual_weight · LPIPS(x, x̂) )          (pixel_loss="l1"; "l2": (x − x̂)²)
    g      = − mean( D(x̂) )
    λ      = clamp( ‖∇_L nll‖ / (‖∇_L g‖ + 1e-4), 0, 1e4 ) · disc_weight    (L = decoder.conv_out.weight)
    loss_G = nll + λ · disc_factor · g + codebook_weight · vq_loss

Discriminator, run on the real and on the fake batch *separately* (its BatchNorm sees one kind at a time)::

    loss_D = disc_factor · ½ ( mean relu(1 − D(x)) + mean relu(1 + D(x̂)) )          (hinge)
           = disc_factor · ½ ( mean softplus(−D(x)) + mean softplus(D(x̂)) )        (vanilla)

``disc_factor`` is 0 while ``step < disc_start``: the autoencoder first learns to reconstruct, and only
then meets a discriminator. The adaptive weight λ rescales the adversarial gradient at the last decoder
layer to the size of the reconstruction gradient, so neither drowns the other.

Choices that differ from taming, none of which changes ``loss_G`` or ``loss_D``:

* While the discriminator is off (``disc_factor == 0``) λ is not computed (it would cost two extra
  backward passes, one through VGG) and is logged as 0; D(x̂) is evaluated without a graph, for the logs.
* Where λ cannot be computed (no grad mode, e.g. validation) it is 0, as in taming. A gradient that is
  None (the loss does not reach ``last_layer``) counts as zero, so λ stays finite:
  ``‖∇nll‖ / 1e-4`` clamped to 1e4, or 0 when both vanish.
* Every loss is computed in float32, so fp16 autocast cannot overflow the sums.

``VQGANLoss.sber_movqgan()`` gives SBER-MoVQGAN's recipe: L2 + 0.1·LPIPS + 0.1·GAN (hinge, 2-layer
PatchGAN) + codebook, the GAN on from step 0, and no adaptive weight (λ = 0.1 fixed).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimovq.discriminator import NLayerDiscriminator
from minimovq.lpips import LPIPS

__all__ = ["VQGANLoss", "hinge_d_loss", "discriminator_loss", "vanilla_d_loss", "adaptive_weight", "adopt_weight"]


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator (Lesson 3's exercise `hinge_d_loss`). Logits of any shape -> scalar.

    L_D = ½ ( mean relu(1 − D(x)) + mean relu(1 + D(x̂)) )
    """
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def discriminator_loss(disc: nn.Module, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss on a real batch x and a reconstructed batch x_hat (Lesson 3's exercise
    `discriminator_loss`). x, x_hat: (B, C, H, W) -> scalar.

    Real and fake go through D in two separate forward passes, so its BatchNorm never sees a mixed batch, and
    x_hat is detached, so no gradient reaches the generator (only D learns from this loss):

        L_D = ½ ( mean relu(1 − D(x)) + mean relu(1 + D(sg[x̂])) )
    """
    logits_real = disc(x)
    logits_fake = disc(x_hat.detach())
    return hinge_d_loss(logits_real, logits_fake)


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating (logistic) loss of the discriminator. Logits of any shape -> scalar.

    L_D = ½ ( mean softplus(−D(x)) + mean softplus(D(x̂)) ),  i.e. BCE with labels 1 (real) and 0 (fake)
    """
    return 0.5 * (F.softplus(-logits_real.float()).mean() + F.softplus(logits_fake.float()).mean())


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    delta: float = 1e-4) -> torch.Tensor:
    """VQGAN's adaptive weight λ (Lesson 3's exercise `adaptive_weight`), without the disc_weight factor.

    λ = clamp( ‖∇_L nll‖ / (‖∇_L g‖ + δ), 0, 1e4 ), detached.  Both losses are scalars that depend on
    the parameter ``last_layer`` (L); the graph is kept for the real backward pass. A gradient that is
    None (the loss does not reach L) counts as zero.
    """
    grads = []
    for loss in (nll_loss, g_loss):
        g = None
        if loss.requires_grad:
            (g,) = torch.autograd.grad(loss, last_layer, retain_graph=True, allow_unused=True)
        grads.append(torch.zeros_like(last_layer) if g is None else g)
    nll_norm, g_norm = (g.detach().float().norm() for g in grads)
    # λ = ‖∇_L nll‖ / (‖∇_L g‖ + δ), clamped to [0, 1e4] and cut from the graph
    return torch.clamp(nll_norm / (g_norm + delta), 0.0, 1e4).detach()


def adopt_weight(weight: float, step: int, threshold: int, value: float = 0.0) -> float:
    """``value`` while ``step < threshold``, else ``weight`` (taming's disc_start gate)."""
    return value if step < threshold else weight


_D_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}
_PIXEL_LOSSES = {"l1": lambda x, x_hat: (x - x_hat).abs(), "l2": lambda x, x_hat: (x - x_hat).pow(2)}


class VQGANLoss(nn.Module):
    """VQGAN's perceptual + adversarial objective, with the PatchGAN as ``.discriminator``.

    Args (taming's names and defaults):
        disc_start: first step at which the GAN terms count (250001 for vqgan_imagenet_f16_1024).
        codebook_weight: weight of the quantizer loss.
        disc_num_layers, disc_in_channels, disc_ndf: the NLayerDiscriminator.
        disc_factor: weight of the GAN terms once on (both loss_G's and loss_D's).
        disc_weight: multiplies the adaptive weight (0.8 for vqgan_imagenet_f16_1024).
        perceptual_weight: weight of LPIPS inside nll (0 skips LPIPS entirely).
        disc_loss: "hinge" or "vanilla".  pixel_loss: "l1" (taming) or "l2" (SBER-MoVQGAN).
    Keyword-only extras:
        use_adaptive_weight: False uses λ = disc_weight (SBER-MoVQGAN).
        disc_warmup_steps: ramp the generator's GAN weight linearly from 0 over this many steps after
            disc_start, while D trains at full strength: D warms up before G feels it (0 = taming).
        perceptual: an LPIPS module to use (e.g. shared with the metrics); default ``LPIPS()``.
    """

    def __init__(self, disc_start: int, codebook_weight: float = 1.0, disc_num_layers: int = 3,
                 disc_in_channels: int = 3, disc_factor: float = 1.0, disc_weight: float = 1.0,
                 perceptual_weight: float = 1.0, disc_ndf: int = 64, disc_loss: str = "hinge",
                 pixel_loss: str = "l1", *, use_adaptive_weight: bool = True, disc_warmup_steps: int = 0,
                 perceptual: nn.Module | None = None):
        super().__init__()
        if disc_loss not in _D_LOSSES:
            raise ValueError(f"disc_loss must be one of {sorted(_D_LOSSES)}, got {disc_loss!r}")
        if pixel_loss not in _PIXEL_LOSSES:
            raise ValueError(f"pixel_loss must be one of {sorted(_PIXEL_LOSSES)}, got {pixel_loss!r}")
        if disc_warmup_steps < 0:
            raise ValueError(f"disc_warmup_steps must be >= 0, got {disc_warmup_steps}")
        self.disc_start, self.codebook_weight = int(disc_start), float(codebook_weight)
        self.disc_factor, self.disc_weight = float(disc_factor), float(disc_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.disc_loss_name, self.pixel_loss_name = disc_loss, pixel_loss
        self.use_adaptive_weight, self.disc_warmup_steps = use_adaptive_weight, int(disc_warmup_steps)
        if self.perceptual_weight > 0:
            self.perceptual_loss = perceptual if perceptual is not None else LPIPS()
        else:
            self.perceptual_loss = None
        self.discriminator = NLayerDiscriminator(input_nc=disc_in_channels, ndf=disc_ndf,
                                                 n_layers=disc_num_layers)

    @classmethod
    def sber_movqgan(cls, disc_start: int = 0, **kwargs) -> "VQGANLoss":
        """SBER-MoVQGAN's hard-coded recipe: L2 + 0.1·LPIPS + 0.1·GAN (hinge) + codebook.

        The GAN is on from step 0 with a fixed weight (no adaptive λ); the PatchGAN has 2 layers, ndf 64
        (663,361 parameters). SBER trained with Adam, lr 1e-4, betas (0.5, 0.9), grads clipped by value 1.
        Any argument can still be overridden by keyword.
        """
        recipe = dict(codebook_weight=1.0, disc_num_layers=2, disc_factor=1.0, disc_weight=0.1,
                      perceptual_weight=0.1, disc_ndf=64, disc_loss="hinge", pixel_loss="l2",
                      use_adaptive_weight=False)
        recipe.update(kwargs)
        return cls(disc_start, **recipe)

    def gan_factors(self, step: int) -> tuple[float, float]:
        """(generator's, discriminator's) disc_factor at this step: 0 before disc_start."""
        d_factor = adopt_weight(self.disc_factor, step, self.disc_start)
        g_factor = d_factor
        if self.disc_warmup_steps > 0 and d_factor > 0:
            g_factor = d_factor * min(1.0, (step - self.disc_start + 1) / self.disc_warmup_steps)
        return g_factor, d_factor

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(nll, pixel, perceptual): nll = mean(pixel(x, x̂) + perceptual_weight · LPIPS(x, x̂)), scalars."""
        x, x_hat = x.float(), x_hat.float()
        pixel = _PIXEL_LOSSES[self.pixel_loss_name](x.contiguous(), x_hat.contiguous())  # (B, C, H, W)
        rec = pixel
        p_loss = torch.zeros((), device=x.device)
        if self.perceptual_loss is not None:
            p_loss = self.perceptual_loss(x.contiguous(), x_hat.contiguous())           # (B, 1, 1, 1)
            rec = rec + self.perceptual_weight * p_loss
        # nll = mean(|x − x̂| + w_p · LPIPS(x, x̂))   (taming's "nll"; its logvar is fixed at 0)
        return rec.mean(), pixel.mean(), p_loss.mean()

    def generator_loss(self, vq_loss: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, step: int,
                       last_layer: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """loss_G for the autoencoder. x, x_hat: (B, C, H, W); vq_loss: scalar (the quantizer's); last_layer: the
        decoder's last weight (``model.decoder.conv_out.weight``), needed for the adaptive weight.

        Returns (loss, logs); logs holds detached scalars: total_loss, quant_loss, nll_loss, pixel_loss
        (mean |x − x̂| or (x − x̂)²), p_loss (mean LPIPS), g_loss, d_weight (λ incl. disc_weight),
        disc_factor and logits_fake (mean). ``discriminator_loss`` logs logits_real.
        """
        nll, pixel, p_loss = self.reconstruction_loss(x, x_hat)
        g_factor, _ = self.gan_factors(step)
        if g_factor > 0:
            logits_fake = self.discriminator(x_hat.contiguous()).float()
        else:  # the discriminator is off: its logits are only logged, no graph needed
            with torch.no_grad():
                logits_fake = self.discriminator(x_hat.detach().contiguous()).float()
        g_loss = -logits_fake.mean()
        d_weight = torch.zeros((), device=nll.device)
        if g_factor > 0:
            if not self.use_adaptive_weight:
                d_weight = torch.full((), self.disc_weight, device=nll.device)
            elif torch.is_grad_enabled() and nll.requires_grad:
                if last_layer is None:
                    raise ValueError("the adaptive weight needs last_layer=model.decoder.conv_out.weight "
                                     "(or build the loss with use_adaptive_weight=False)")
                d_weight = adaptive_weight(nll, g_loss, last_layer) * self.disc_weight
        # loss_G = nll + λ · disc_factor · g + codebook_weight · vq_loss
        vq_loss = torch.as_tensor(vq_loss, device=nll.device).float().mean()
        loss = nll + self.codebook_weight * vq_loss
        if g_factor > 0:
            loss = loss + d_weight * g_factor * g_loss
        logs = {"total_loss": loss, "quant_loss": vq_loss, "nll_loss": nll, "pixel_loss": pixel, "p_loss": p_loss, "g_loss": g_loss, "d_weight": d_weight,
                "disc_factor": torch.tensor(g_factor), "logits_fake": logits_fake.mean()}
        return loss, {k: v.detach() for k, v in logs.items()}

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        """loss_D. x, x_hat: (B, C, H, W); x_hat is detached here, so no gradient reaches the autoencoder.

        D runs on the real and the fake batch separately. Returns (loss, logs) with disc_loss,
        disc_factor, logits_real and logits_fake (means, detached).
        """
        logits_real = self.discriminator(x.detach().contiguous()).float()
        logits_fake = self.discriminator(x_hat.detach().contiguous()).float()
        _, d_factor = self.gan_factors(step)
        # loss_D = disc_factor · ½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))   (hinge)
        loss = d_factor * _D_LOSSES[self.disc_loss_name](logits_real, logits_fake)
        logs = {"disc_loss": loss, "disc_factor": torch.tensor(d_factor),
                "logits_real": logits_real.mean(), "logits_fake": logits_fake.mean()}
        return loss, {k: v.detach() for k, v in logs.items()}
