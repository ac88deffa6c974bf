"""The transformer the priors are made of: pre-LN blocks with SDPA attention, a KV cache, and the optimizer.

Shapes: x (B, L, dim); attention heads split dim into (heads, dim / heads). ``KVCache`` stores keys and values
of every layer for incremental decoding (Lesson 5's autoregressive baseline).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

__all__ = ["KVCache", "Attention", "Block", "make_optimizer"]


class KVCache:
    """Keys and values of every layer for incremental (autoregressive) decoding.

    ``k`` and ``v`` have shape (depth, B, heads, max_len, head_dim), preallocated once; ``length`` counts
    the positions already written.
    """

    def __init__(self, depth, batch_size, heads, max_len, head_dim, device=None, dtype=torch.float32):
        shape = (depth, batch_size, heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0

    def update(self, layer, k, v):
        """Store k, v (B, heads, L, head_dim) at the next L positions; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KVCache is full: {end} positions asked, max_len={self.max_len}. "
                             "Make a new cache with model.new_cache(batch_size) for each sample.")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Attention(nn.Module):
    """Multi-head self-attention with ``F.scaled_dot_product_attention``: softmax(q·kᵀ/√d)·v."""

    def __init__(self, dim, heads, dropout=0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, causal=False, cache=None, layer=0):
        # (B, L, 3·dim) -> 3 × (B, heads, L, head_dim)
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, heads, S, head_dim), S = positions so far
            k, v = k.to(q.dtype), v.to(q.dtype)  # a no-op unless autocast changed q's dtype
        L, S = q.shape[2], k.shape[2]
        p = self.dropout if self.training else 0.0
        if causal and L == S and L > 1:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        elif causal and L > 1:
            # query i sits at absolute position S-L+i and sees keys 0..S-L+i
            allowed = torch.ones(L, S, dtype=torch.bool, device=x.device).tril(S - L)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        else:  # bidirectional, or a single new query that may see every cached key
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, heads, mlp_ratio=4, dropout=0.0):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout))

    def forward(self, x, causal=False, cache=None, layer=0):
        x = x + self.attn(self.ln1(x), causal, cache, layer)
        return x + self.mlp(self.ln2(x))


def make_optimizer(model, lr=3e-4, warmup=100, weight_decay=0.01, betas=(0.9, 0.96), total_steps=None):
    """AdamW with linear warm-up (then constant, or cosine decay to 0 when total_steps is given).

    Weight decay applies to matrices only (not to biases, LayerNorms or embeddings). Returns
    (optimizer, scheduler); call ``scheduler.step()`` once after each optimizer step.
    """
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        if total_steps is None:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
