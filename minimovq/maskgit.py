"""MaskGIT (Chang et al. 2022): a bidirectional transformer prior over a grid of VQ tokens.

The same class is also the autoregressive baseline (``causal=True``), so that Lesson 5 compares the two
priors with the same network. This module holds the network and its training pieces: the cosine masking
schedule, the masking of a batch, the loss and the optimizer. Decoding lives in ``minimovq.sampling`` and
in ``minimovq.sampling``, the transformer blocks and the optimizer in ``minimovq.transformer``.

Token shapes. A grid of ``(h, w)`` positions holds ``N = h·w`` positions and ``G`` indices per position
(Lesson 4's multichannel quantization, ``groups``; G = 1 is the plain VQ case). The model accepts grids
``(B, h, w)`` / ``(B, h, w, G)`` or flat sequences ``(B, N)`` / ``(B, N, G)`` in raster order, and always
returns logits of shape ``(B, N, G, K)``.

Masking treats a position as one unit: its G tokens are masked together and revealed together. The input
of a position is the sum of G token embeddings (one table per group, each with K codes plus [MASK]), so a
masked position is the sum of the G [MASK] embeddings. The G output heads predict the G tokens of a
position independently given the context, and the sampler's confidence of a position is the sum of the
log-probabilities of its G sampled tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .transformer import Block, KVCache, make_optimizer  # make_optimizer re-exported for the lessons
from .validate import check_labels, check_token_ids

__all__ = ["MaskGIT", "KVCache", "cosine_schedule", "mask_tokens", "select_to_remask", "drop_labels", "prior_loss", "make_optimizer"]


class MaskGIT(nn.Module):
    """A transformer prior over a token grid: bidirectional MaskGIT, or raster-order AR when ``causal``.

    Args:
        n_embed: K, the number of codes. The [MASK] token has id ``K`` (``self.mask_id``).
        grid_size: (h, w) of the token grid (an int means square); N = h·w positions.
        dim, depth, heads: width, number of pre-LN blocks, attention heads (dim % heads == 0).
        groups: G, indices per position (MoVQ multichannel quantization).
        num_classes: if set, a class embedding conditions the model; label ``num_classes`` (or
            ``labels=None``) is the "no class" token.
        causal: raster-order autoregressive prior instead of the masked bidirectional one.

    The sequence is one prefix token (the class embedding, or a learned start token) followed by the
    positions; learned position embeddings cover all N+1 slots. Bidirectional: the prefix and N
    (partly masked) positions go in, the N position outputs are read. Causal: the inputs are shifted,
    [prefix, x_0, ..., x_{N-2}], so output i predicts x_i from x_<i.
    """

    def __init__(self, n_embed, grid_size, dim, depth, heads, groups=1, num_classes=None,
                 causal=False, mlp_ratio=4, dropout=0.0):
        super().__init__()
        h, w = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
        if dim % heads:
            fit = max(d for d in range(1, heads + 1) if dim % d == 0)
            raise ValueError(f"dim={dim} must be divisible by heads={heads}; pick e.g. heads={fit}.")
        if n_embed < 2 or groups < 1:
            raise ValueError(f"need n_embed >= 2 and groups >= 1, got {n_embed}, {groups}.")
        self.n_embed, self.groups, self.grid_size = n_embed, groups, (h, w)
        self.num_positions, self.num_classes, self.causal = h * w, num_classes, causal
        self.dim, self.depth, self.heads = dim, depth, heads
        self.mask_id = n_embed
        # one table per group, K codes + [MASK] each, stored as one Embedding with row offsets g·(K+1)
        self.tok_emb = nn.Embedding(groups * (n_embed + 1), dim)
        self.register_buffer("group_offset", torch.arange(groups) * (n_embed + 1), persistent=False)
        self.prefix_emb = nn.Embedding((num_classes or 0) + 1, dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, self.num_positions + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, groups * n_embed)  # G heads over K classes
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def flatten_tokens(self, tokens):
        """(B, h, w[, G]) or (B, N[, G]) -> (B, L, G) long, raster order. L = N except for causal prefixes."""
        h, w, G = *self.grid_size, self.groups
        if not torch.is_tensor(tokens) or tokens.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
            raise ValueError("tokens must be an integer tensor of code indices; got "
                             f"{getattr(tokens, 'dtype', type(tokens))}. Convert with tokens.long().")
        shape = tuple(tokens.shape[1:])
        if shape == (h, w, G) or (G == 1 and shape == (h, w)):
            return rearrange(tokens.reshape(-1, h, w, G), "b h w g -> b (h w) g").long()
        if (G == 1 and len(shape) == 1) or (len(shape) == 2 and shape[1] == G):
            if shape[0] == self.num_positions or (self.causal and 0 < shape[0] <= self.num_positions):
                return tokens.reshape(tokens.shape[0], shape[0], G).long()
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not fit grid_size={(h, w)}, groups={G}; "
                         f"expected (B, {h}, {w}{', ' + str(G) if G > 1 else ''}) or "
                         f"(B, {h * w}{', ' + str(G) if G > 1 else ''}).")

    def _prefix(self, labels, batch_size, device):
        """(B, 1, dim): the class embedding, or the start / "no class" token when labels is None."""
        none_id = self.num_classes or 0
        if labels is None:
            labels = torch.full((batch_size,), none_id, dtype=torch.long, device=device)
        else:  # ids in [0, C] (C = "no class"): an id outside the table is a device-side assert on CUDA
            labels = check_labels(labels, self.num_classes, batch_size).to(device)
        return self.prefix_emb(labels)[:, None]

    def _embed(self, tokens):
        """(B, L, G) long -> (B, L, dim): the sum of the G token embeddings of each position."""
        return self.tok_emb(tokens + self.group_offset).sum(dim=2)

    def _head(self, x):
        """(B, L, dim) -> logits (B, L, G, K)."""
        return rearrange(self.head(self.ln_f(x)), "b l (g k) -> b l g k", g=self.groups)

    def forward(self, tokens, labels=None):
        """Logits (B, N, G, K) for every position (a causal prefix of length L gives (B, L, G, K)).

        Bidirectional: tokens hold ``mask_id`` at masked positions. Causal: tokens are the full sequence
        (teacher forcing); output i only depends on tokens before i.
        """
        tokens = self.flatten_tokens(tokens)
        B, L, _ = tokens.shape
        if B == 0:
            raise ValueError(f"tokens is an empty batch, shape {tuple(tokens.shape)}: give B >= 1 token grids.")
        top = self.n_embed - 1 if self.causal else self.mask_id
        check_token_ids(tokens, top, fix=("" if self.causal else f"{self.mask_id} is [MASK]; ")
                        + f"check the model's n_embed={self.n_embed} against the tokenizer's n_embed.")
        body = tokens[:, :-1] if self.causal else tokens  # causal: shift right behind the prefix
        x = torch.cat([self._prefix(labels, B, tokens.device), self._embed(body)], dim=1)
        x = x + self.pos_emb[:, : x.shape[1]]
        for block in self.blocks:
            x = block(x, causal=self.causal)
        return self._head(x if self.causal else x[:, 1:])

    def new_cache(self, batch_size, device=None, dtype=None):
        """An empty KVCache for ``decode_step`` (causal models), N slots long."""
        device = torch.device(device or self.pos_emb.device)
        if dtype is None:
            dtype = self.pos_emb.dtype
            try:  # under autocast (torch >= 2.4) the keys come out in the autocast dtype
                if torch.is_autocast_enabled(device.type):
                    dtype = torch.get_autocast_dtype(device.type)
            except (AttributeError, TypeError):
                pass
        return KVCache(self.depth, batch_size, self.heads, self.num_positions, self.dim // self.heads,
                       device=device, dtype=dtype)

    def decode_step(self, tokens, cache, labels=None):
        """One autoregressive step with the KV cache: logits (B, G, K) of position ``cache.length``.

        tokens: None at the first step (the prefix goes in), then (B, G) the tokens of the previous
        position. Equal to ``forward(seq)[:, i]`` without recomputing the keys of earlier positions.
        """
        if not self.causal:
            raise ValueError("decode_step needs a causal model: MaskGIT(..., causal=True).")
        i = cache.length
        if i == 0:
            x = self._prefix(labels, cache.k.shape[1], cache.k.device)
        else:
            check_token_ids(tokens, self.n_embed - 1, fix=f"the model has n_embed={self.n_embed}.")
            x = self._embed(tokens.reshape(-1, 1, self.groups).long())
        x = x + self.pos_emb[:, i:i + 1]
        for layer, block in enumerate(self.blocks):
            x = block(x, causal=True, cache=cache, layer=layer)
        cache.length += 1
        return self._head(x)[:, 0]


def cosine_schedule(r):
    """The mask ratio γ(r) = cos(π·r/2): 1 at r = 0 (all masked), 0 at r = 1. Elementwise, r in [0, 1]."""
    if not (torch.is_tensor(r) and r.is_floating_point()):
        r = torch.as_tensor(r, dtype=torch.get_default_dtype())
    # γ(r) = cos(π r / 2)
    return torch.cos(math.pi / 2 * r)


def select_to_remask(confidence, n):
    """BoolTensor (B, N), True at the n least-confident positions of each row.

    confidence: (B, N) float (+inf never gets picked while finite entries remain).
    n: an int, or a LongTensor (B,) with one count per row.
    """
    B, N = confidence.shape
    n = torch.as_tensor(n, device=confidence.device).long().reshape(-1).expand(B)
    # rank 0 = least confident; stable so that ties break by position
    ranks = confidence.argsort(dim=-1, stable=True).argsort(dim=-1, stable=True)
    return ranks < n[:, None]


def mask_tokens(tokens, mask_id, generator=None):
    """Mask a batch for training: per sample, r ~ U(0,1) and ⌈γ(r)·N⌉ (at least 1) random positions.

    tokens: (B, N) or (B, N, G) long. Returns (masked_tokens, mask): masked_tokens has ``mask_id`` at the
    masked positions (all G tokens of a masked position), mask is a BoolTensor (B, N), True where masked.
    Every random number comes from ``generator`` (on tokens' device) when it is given.
    """
    B, N = tokens.shape[:2]
    r = torch.rand(B, generator=generator, device=tokens.device)
    # n = max(1, ⌈γ(r)·N⌉)
    n = torch.ceil(cosine_schedule(r) * N).long().clamp(min=1)
    # the n smallest of N uniform scores are a uniformly random n-subset
    scores = torch.rand(B, N, generator=generator, device=tokens.device)
    mask = select_to_remask(scores, n)  # (B, N)
    full = mask.reshape(B, N, *([1] * (tokens.ndim - 2)))
    return tokens.masked_fill(full, mask_id), mask


def drop_labels(labels, p, null_id, generator=None):
    """Label dropout for classifier-free guidance: each label becomes ``null_id`` ("no class") with
    probability p. labels: (B,) long -> (B,) long, a new tensor."""
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return labels.masked_fill(drop, null_id)


def prior_loss(model, tokens, labels=None, label_smoothing=0.1, label_drop=0.0, generator=None):
    """Training loss of a prior, as a Trainer step_fn dict {"loss", "acc"}.

    MaskGIT: mask with ``mask_tokens`` and take the cross-entropy on the masked positions only
    (all G tokens of each), with label smoothing (0.1 in the paper). Causal: cross-entropy of every next
    token. ``label_drop`` replaces that fraction of labels by "no class" (for unconditional sampling of a
    class-conditional model). acc is the top-1 accuracy on the scored tokens.
    """
    tokens = model.flatten_tokens(tokens)  # (B, N, G)
    # the targets are real codes: [MASK] (= n_embed) or beyond would be a cross-entropy IndexError / device assert
    check_token_ids(tokens, model.n_embed - 1, name="training token ids",
                    fix=f"the prior has n_embed={model.n_embed}; build it with the tokenizer's n_embed.")
    if labels is not None:
        labels = check_labels(labels, model.num_classes, tokens.shape[0]).to(tokens.device)
    if labels is not None and label_drop > 0:
        labels = drop_labels(torch.as_tensor(labels, device=tokens.device).long(), label_drop, model.num_classes,
                             generator)
    if model.causal:
        logits, target = model(tokens, labels), tokens  # (B, N, G, K), (B, N, G)
    else:
        masked, mask = mask_tokens(tokens, model.mask_id, generator)
        logits = model(masked, labels)[mask]  # (M, G, K) at the M masked positions
        target = tokens[mask]  # (M, G)
    # L = −Σ_masked log p(x_i | x_unmasked), with smoothed targets
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                           label_smoothing=label_smoothing)
    acc = (logits.argmax(-1) == target).float().mean()
    return {"loss": loss, "acc": acc.detach()}
