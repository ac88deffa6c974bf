"""Architecture figures measured from the real modules, so that they cannot drift from the models.

Each ``draw_*`` function runs **one** forward pass of the given model on the given input (one sample of it, in
eval mode, without gradients, leaving the model's mode and the random streams as they were) with a forward hook
on every submodule, and draws a block diagram whose boxes carry the measured output shapes (B = batch)::

    fig = draw_vqgan(model, x_test)            # VQGAN or MoVQ: encoder, quantizer, decoder (U-shaped)
    d = architecture(model, x_test)            # the same figure as data: d.stages(), d.z_q_entries(), ...

``draw_vae`` (Lesson 1), ``draw_vqvae`` (2), ``draw_vqgan`` (3 and 4), ``draw_maskgit`` (5); which modules become
which boxes is in :mod:`minimovq.figures_models`. For a MoVQ, every point where ``z_q`` enters the decoder
(each SpatialNorm: ResnetBlock norm1/norm2, the attention norm, norm_out) is marked in red.
"""
from __future__ import annotations

import torch
from torch import nn

from .diagram import Diagram, Stage, render, trace_shapes  # noqa: F401 (re-exported)
from .figures_models import maskgit_diagram, vae_diagram, vqgan_diagram, vqvae_diagram

__all__ = ["Stage", "Diagram", "trace_shapes", "architecture", "render", "draw_vae", "draw_vqvae", "draw_vqgan",
           "draw_maskgit"]


def architecture(model: nn.Module, *inputs, **kwargs) -> Diagram:
    """The figure data of any lesson model (VAE, VQVAE, VQGAN / MoVQ, MaskGIT) for the given input."""
    from .maskgit import MaskGIT
    from .vae import VAE
    from .vqgan import VQGAN
    from .vqvae import VQVAE
    for cls, fn in ((VAE, vae_diagram), (VQVAE, vqvae_diagram), (VQGAN, vqgan_diagram), (MaskGIT, maskgit_diagram)):
        if isinstance(model, cls):
            return fn(model, *inputs, **kwargs)
    raise ValueError(f"no architecture figure for {type(model).__name__}; expected a VAE, VQVAE, VQGAN, MoVQ or "
                     "MaskGIT from minimovq")


def draw_vae(model: nn.Module, x: torch.Tensor):
    """Lesson 1: the VAE's architecture with the shapes of one forward pass on x[:1]. Returns the Figure."""
    return render(vae_diagram(model, x))


def draw_vqvae(model: nn.Module, x: torch.Tensor):
    """Lesson 2: the VQ-VAE's architecture with the shapes of one forward pass on x[:1]. Returns the Figure."""
    return render(vqvae_diagram(model, x))


def draw_vqgan(model: nn.Module, x: torch.Tensor):
    """Lessons 3 and 4: a VQGAN's (or MoVQ's, with every z_q entry in red) encoder and decoder. Returns the Figure."""
    return render(vqgan_diagram(model, x))


def draw_maskgit(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor | None = None):
    """Lesson 5: MaskGIT's input (summed group embeddings, class prefix, positions) and output heads."""
    return render(maskgit_diagram(model, tokens, labels))
