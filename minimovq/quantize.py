"""Vector quantization (VQ-VAE, van den Oord 2017): the codebooks every later lesson uses.

Two quantizers share one interface, ``forward(z) -> (z_q, loss, indices)`` with z of shape (B, D, H, W):

* :class:`VectorQuantizer` learns the codebook by gradient descent (codebook loss + β · commitment loss).
* :class:`EMAVectorQuantizer` learns it as online k-means (exponential moving averages, Laplace smoothing).

Both are textbook by default. Options add codebook health (dead-code restarts, l2-normalised codes,
k-means init) and MoVQ's grouped (multichannel) quantization. Nothing builds an N×K one-hot matrix:
distances are computed in fp32, a chunk of rows at a time, and counts use ``bincount``/``index_add_``.
:class:`CodebookUsage` (in ``minimovq.usage``, re-exported here) measures usage and perplexity over a whole
split, not one batch.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .distributed import all_gather_rows, all_reduce_sum
from .nearest import nearest_codes  # re-exported
from .ema import assignment_stats, ema_from_stats, ema_update, kmeans  # re-exported
from .outputs import QuantizerOutput
from .rotation import rotate_to
from .usage import CodebookUsage, codebook_usage, perplexity  # re-exported: measuring usage lives in .usage

__all__ = ["QuantizerOutput", "nearest_codes", "codebook_loss", "commitment_loss", "straight_through", "quantize",
           "ema_update", "assignment_stats", "ema_from_stats",
           "perplexity", "kmeans", "VectorQuantizer", "EMAVectorQuantizer", "CodebookUsage", "codebook_usage"]

INITS = ("taming", "variance_scaling")  # codebook initialisations, see _Quantizer
def codebook_loss(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The codebook term ‖sg[z] − e‖² (mean over elements, fp32): it moves the codes towards the encoder."""
    return F.mse_loss(z_q.float(), z.detach().float())


def commitment_loss(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The commitment term ‖z − sg[e]‖² (mean over elements, fp32): it keeps the encoder near its codes."""
    return F.mse_loss(z.float(), z_q.detach().float())


def straight_through(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the value of z_q, the gradient of z.  z_st = z + sg[z_q − z]."""
    return z + (z_q.to(z.dtype) - z).detach()


def quantize(z: torch.Tensor, codebook: torch.Tensor, beta: float = 0.25) -> QuantizerOutput:
    """Quantize z (B, D, H, W) with codebook (K, D): returns QuantizerOutput(z_q (B, D, H, W), vq_loss (),
    indices (B, H, W)).

    z_q carries straight-through gradients, and the loss is the paper's
    L = ‖sg[z] − e‖² + β ‖z − sg[e]‖².
    """
    if z.ndim != 4 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"quantize expects z (B, {codebook.shape[1]}, H, W) to match the codebook's "
                         f"{codebook.shape[1]} channels, got {tuple(z.shape)}")
    B, _, H, W = z.shape
    flat = rearrange(z, "b d h w -> (b h w) d")  # (N, D), ordered by b, h, w
    indices = nearest_codes(flat, codebook)
    z_q = rearrange(F.embedding(indices, codebook), "(b h w) d -> b d h w", b=B, h=H, w=W)
    loss = codebook_loss(z, z_q) + beta * commitment_loss(z, z_q)
    return QuantizerOutput(straight_through(z, z_q), loss, indices.view(B, H, W))


class _Quantizer(nn.Module):
    """What both quantizers share: the codebook, grouping, lookup and codebook-health options.

    ``init`` picks the initial codebook: ``"taming"`` (default), e ~ U(−1/K, 1/K) as in taming and SBER;
    ``"variance_scaling"``, e ~ U(−√(3/d), √(3/d)) with d = D/G, Sonnet's VQ-VAE (``VarianceScaling``,
    uniform, fan-in = d), for matching Sonnet's setup. Lesson 2 measures what each choice does to usage.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float, groups: int, l2_norm: bool,
                 dead_code_threshold: int, kmeans_init: bool, chunk_size: int | None, init: str = "taming",
                 rotation_trick: bool = False):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if n_embed < 1 or embed_dim < 1:
            raise ValueError(f"n_embed and embed_dim must be positive, got n_embed={n_embed}, embed_dim={embed_dim}")
        if groups < 1 or embed_dim % groups:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by groups={groups}: each group quantizes "
                             f"embed_dim / groups contiguous channels; pick groups among the divisors of {embed_dim}")
        self.n_embed, self.embed_dim, self.beta, self.groups = n_embed, embed_dim, beta, groups
        self.code_dim = embed_dim // groups  # the codebook's width: D / G
        self.l2_norm, self.dead_code_threshold = l2_norm, int(dead_code_threshold)
        self.kmeans_init, self.chunk_size = kmeans_init, chunk_size
        self.embedding = nn.Embedding(n_embed, self.code_dim)
        bound = 1.0 / n_embed if init == "taming" else (3.0 / self.code_dim) ** 0.5
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.init = init
        self.rotation_trick = bool(rotation_trick)  # Fifty et al. 2024, minimovq.rotation; no state
        # Option buffers exist only when the option is on, so default state dicts match taming/SBER exactly.
        if self.dead_code_threshold > 0:
            self.register_buffer("steps_unused", torch.zeros(n_embed, dtype=torch.long))
        if kmeans_init:
            self.register_buffer("initted", torch.tensor(False))

    def options(self) -> dict[str, Any]:
        """``{"class": this class's name, **every constructor option that differs from its default}``: what
        rebuilds this quantizer around a fresh codebook of the same size (``VQGAN.config()`` saves it)."""
        out: dict[str, Any] = {"class": type(self).__name__}
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name not in ("self", "n_embed", "embed_dim") and getattr(self, name) != p.default:
                out[name] = getattr(self, name)
        return out

    @property
    def codebook(self) -> torch.Tensor:
        """The codes in use (K, D/G): the embedding, l2-normalised when ``l2_norm``."""
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.l2_norm else w

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z (B, D, H, W) -> QuantizerOutput(z_q (B, D, H, W) in z's dtype, vq_loss (), indices (B, H, W) or
        (B, H, W, G)). In training, the codebook-health options and the EMA see the global batch under torchrun."""
        if z.ndim != 4 or z.shape[1] != self.embed_dim:
            got = z.shape[1] if z.ndim == 4 else f"shape {tuple(z.shape)}"
            raise ValueError(f"{type(self).__name__} expects z of shape (B, {self.embed_dim}, H, W) "
                             f"(embed_dim={self.embed_dim}), got {got} channels in {tuple(z.shape)}; "
                             f"make the encoder output embed_dim={self.embed_dim} channels")
        B, _, H, W = z.shape
        G = self.groups
        flat = rearrange(z, "b (g d) h w -> (b h w g) d", g=G)  # (N·G, D/G), group g = channels [g·D/G, (g+1)·D/G)
        if self.l2_norm:
            flat = F.normalize(flat, dim=1)
        if self.training:
            finite = self._finite_rows(flat)
            self._restart_codes(flat if finite is None else flat[finite])
        codebook = self.codebook
        indices = nearest_codes(flat, codebook, self.chunk_size)
        flat_q = F.embedding(indices, codebook)  # looked up before any EMA update
        loss = self._loss(flat, flat_q)
        if self.training:
            with torch.no_grad():
                keep = slice(None) if finite is None else finite
                self._after_assign(flat.detach()[keep], indices[keep])
        # the decoder's gradient reaches z unchanged (straight-through) or rotated and rescaled (rotation trick)
        z_q = rotate_to(flat, flat_q) if self.rotation_trick else straight_through(flat, flat_q)
        z_q = rearrange(z_q, "(b h w g) d -> b (g d) h w", b=B, h=H, w=W, g=G)
        indices = rearrange(indices, "(b h w g) -> b h w g", b=B, h=H, w=W, g=G)
        return QuantizerOutput(z_q.to(z.dtype), loss, indices.squeeze(-1) if G == 1 else indices)

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Codes -> z_q (B, D, H, W). ``indices`` is (B, H, W), or (B, H, W, G) with groups; taming's form
        ``get_codebook_entry(flat_indices, shape=(B, H, W, D))`` is accepted too. Works for any batch and grid."""
        G = self.groups
        if shape is not None:
            if len(shape) != 4 or shape[-1] != self.embed_dim:
                raise ValueError(f"shape must be (B, H, W, {self.embed_dim}), got {tuple(shape)}")
            indices = indices.reshape(*shape[:3], G)
        elif G == 1 and indices.ndim == 3:
            indices = indices.unsqueeze(-1)
        if indices.ndim != 4 or indices.shape[-1] != G:
            want = "(B, H, W)" if G == 1 else f"(B, H, W, {G})"
            raise ValueError(f"indices must have shape {want} for groups={G}, got {tuple(indices.shape)}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_embed):
            raise ValueError(f"indices must lie in [0, {self.n_embed}) (n_embed={self.n_embed}), "
                             f"got [{int(indices.min())}, {int(indices.max())}]")
        z_q = F.embedding(indices.long(), self.codebook)  # (B, H, W, G, D/G)
        return rearrange(z_q, "b h w g d -> b (g d) h w")

    @torch.no_grad()
    def _finite_rows(self, flat: torch.Tensor) -> torch.Tensor | None:
        """None when every latent is finite; else a bool mask (N,) of the finite rows, and a warning: NaN or Inf
        latents never reach the codebook (one NaN in an EMA average would poison its code for good)."""
        finite = torch.isfinite(flat).all(dim=1)
        if bool(finite.all()):
            return None
        bad = int((~finite).sum())
        warnings.warn(f"{type(self).__name__}: {bad} of {flat.shape[0]} latent vectors are NaN or Inf; they were "
                      "left out of the codebook update (EMA statistics, dead-code restarts, k-means init). Find "
                      "where they come from: a too-high learning rate, fp16 overflow, or NaN input images.",
                      RuntimeWarning, stacklevel=3)
        return finite

    @torch.no_grad()
    def _restart_codes(self, flat: torch.Tensor) -> None:
        """k-means init on the first training batch; restart codes unused for ``dead_code_threshold`` steps.

        Under torchrun both draw from the global batch (gathered in rank order) with the same random stream on
        every rank, so every rank sets the same codes, and N processes match one."""
        need_init = self.kmeans_init and not bool(self.initted)
        dead = (self.steps_unused >= self.dead_code_threshold).nonzero().squeeze(1) \
            if self.dead_code_threshold > 0 else None
        if not need_init and (dead is None or not dead.numel()):
            return
        flat = all_gather_rows(flat.contiguous())
        if need_init:
            self._set_codes(torch.arange(self.n_embed, device=flat.device), kmeans(flat, self.n_embed))
            self.initted.fill_(True)
        if dead is not None and dead.numel() and flat.shape[0]:
            # re-initialise each dead code from a random encoder output of this batch, distinct outputs while the
            # batch has enough: two codes restarted at one vector would tie in every later argmin
            n, k = flat.shape[0], dead.numel()
            pick = (torch.randperm(n, device=flat.device)[:k] if k <= n
                    else torch.randint(n, (k,), device=flat.device))
            self._set_codes(dead, flat[pick].float())
            self.steps_unused[dead] = 0

    def _set_codes(self, which: torch.Tensor, vectors: torch.Tensor) -> None:
        self.embedding.weight.data[which] = vectors.to(self.embedding.weight.dtype)

    def _after_assign(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        if self.dead_code_threshold > 0:
            used = all_reduce_sum(torch.bincount(indices, minlength=self.n_embed)) > 0  # (K,) over all ranks
            self.steps_unused += 1
            self.steps_unused[used] = 0

    def extra_repr(self) -> str:
        opts = [f"n_embed={self.n_embed}", f"embed_dim={self.embed_dim}", f"beta={self.beta}"]
        for name, default in (("groups", 1), ("l2_norm", False), ("dead_code_threshold", 0), ("kmeans_init", False),
                              ("init", "taming"), ("rotation_trick", False)):
            if getattr(self, name) != default:
                opts.append(f"{name}={getattr(self, name)!r}")
        return ", ".join(opts)


class VectorQuantizer(_Quantizer):
    """VQ-VAE's quantizer with a codebook learned by gradient descent.

    The loss is the paper's ‖sg[z] − e‖² + β‖z − sg[e]‖². ``legacy=True`` reproduces taming/SBER's
    placement of β on the *codebook* term instead: ‖sg[e] − z‖² + β‖e − sg[z]‖² (the same forward value,
    (1+β)·MSE, but the encoder is pulled 4× harder and the codebook 4× softer at β = 0.25).

    Options (all off by default): ``groups`` (MoVQ multichannel codes sharing one codebook of width D/G),
    ``l2_norm`` (cosine codes), ``dead_code_threshold`` (restart a code unused for that many training
    batches from a random encoder output), ``kmeans_init`` (k-means on the first training batch),
    ``init`` (the initial codebook: taming's U(±1/K) or Sonnet's ``"variance_scaling"``), ``chunk_size``
    (rows per distance block) and ``rotation_trick`` (Fifty et al. 2024: the gradient to z is λRᵀg instead of
    straight-through's g; see :mod:`minimovq.rotation`; the forward value is the same). With defaults the state
    dict is ``{"embedding.weight"}``.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = False, groups: int = 1,
                 l2_norm: bool = False, dead_code_threshold: int = 0, kmeans_init: bool = False,
                 chunk_size: int | None = None, init: str = "taming", rotation_trick: bool = False):
        super().__init__(n_embed, embed_dim, beta, groups, l2_norm, dead_code_threshold, kmeans_init, chunk_size,
                         init, rotation_trick)
        self.legacy = legacy

    def _loss(self, z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        if self.legacy:  # taming/SBER: mean((sg[z_q] − z)²) + β·mean((z_q − sg[z])²)
            return commitment_loss(z, z_q) + self.beta * codebook_loss(z, z_q)
        # the paper: ‖sg[z] − e‖² + β‖z − sg[e]‖²
        return codebook_loss(z, z_q) + self.beta * commitment_loss(z, z_q)


class EMAVectorQuantizer(_Quantizer):
    """VQ-VAE's quantizer with an EMA codebook (online k-means), per the paper's appendix.

    The codebook gets no gradient; after each training batch the statistics are updated with
    :func:`ema_update` and the codebook becomes m / N_s. The loss is β‖z − sg[e]‖² alone. ``cluster_size``
    (K,) and ``embed_sum`` (K, D/G) are buffers, saved in the state dict; they start at 1 and at the initial
    codebook, so e = m / N_s equals the initial codebook until the first update. Options as in
    :class:`VectorQuantizer`.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, decay: float = 0.99, eps: float = 1e-5,
                 groups: int = 1, l2_norm: bool = False, dead_code_threshold: int = 0, kmeans_init: bool = False,
                 chunk_size: int | None = None, init: str = "taming", rotation_trick: bool = False):
        super().__init__(n_embed, embed_dim, beta, groups, l2_norm, dead_code_threshold, kmeans_init, chunk_size,
                         init, rotation_trick)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}; 0.99 is the paper's value")
        self.decay, self.eps = decay, eps
        self.embedding.weight.requires_grad_(False)
        self.register_buffer("cluster_size", torch.ones(n_embed))
        self.register_buffer("embed_sum", self.embedding.weight.detach().clone())

    def _loss(self, z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        # only the commitment term β‖z − sg[e]‖²: the EMA moves the codes
        return self.beta * commitment_loss(z, z_q)

    def _set_codes(self, which: torch.Tensor, vectors: torch.Tensor) -> None:
        super()._set_codes(which, vectors)
        self.cluster_size[which] = 1.0  # a restarted code counts as seen once, at its new position
        self.embed_sum[which] = vectors.to(self.embed_sum.dtype)

    def _after_assign(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        super()._after_assign(flat, indices)
        counts, sums = assignment_stats(flat.float(), indices, self.n_embed, self.embed_sum.dtype)
        counts, sums = all_reduce_sum(counts), all_reduce_sum(sums)  # the global batch's statistics
        cluster_size, embed_sum, codebook = ema_from_stats(self.cluster_size, self.embed_sum, counts, sums,
                                                           self.decay, self.eps)
        self.cluster_size.copy_(cluster_size)
        self.embed_sum.copy_(embed_sum)
        self.embedding.weight.data.copy_(codebook)
