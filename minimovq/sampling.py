"""Decoding a token prior: MaskGIT's parallel iterative decoding, KV-cached raster-order sampling, and the
helper that turns an image dataset into token grids once.

MaskGIT (Chang 2022, §3.2) fills an all-[MASK] grid in T steps. At step t (0-based, ratio = (t+1)/T):
  1. predict every position and sample a token at each masked one;
  2. confidence = log p(sampled token) + τ·(1 − ratio)·Gumbel noise; fixed tokens get +∞;
  3. re-mask the n = ⌊γ(ratio)·N⌋ least confident (at least 1, fewer than are masked now).
After step T−1 every token is fixed. T forward passes replace the N (= h·w) of an autoregressive prior.

Both samplers take ``guidance`` w, classifier-free guidance (Ho & Salimans 2022; Muse uses it for a
masked prior): with a class-conditional model trained with label dropout (``prior_loss(label_drop=0.1)``),
the logits become ℓ = ℓ(x | c) + w·(ℓ(x | c) − ℓ(x | ∅)), which sharpens samples towards their class at
the cost of diversity and of a second (batched) forward pass. w = 0 is plain conditional sampling.
"""
from __future__ import annotations

import torch
from einops import rearrange

from minimovq.maskgit import cosine_schedule, select_to_remask  # select_to_remask re-exported
from minimovq.validate import check_sampling_args

__all__ = ["select_to_remask", "decode_step", "sample", "sample_autoregressive", "gumbel_noise"]


def gumbel_noise(shape, generator=None, device=None):
    """Standard Gumbel noise g = −log(−log u), u ~ U(0, 1), from ``generator`` when given."""
    u = torch.rand(shape, generator=generator, device=device).clamp_(min=1e-20)
    return -torch.log(-torch.log(u))


def decode_step(tokens, logits, sampled, noise, mask_id, step, steps, n_start, choice_temperature=4.5):
    """One MaskGIT decoding iteration (Lesson 5's exercise `decode_step`), deterministic: the draws come in.

    Args:
        tokens: (B, N) long, ``mask_id`` at the unknown positions; or (B, N, G), a position unknown when any
            of its G tokens is ``mask_id``. Not modified.
        logits: (B, N, K) (or (B, N, G, K)), the model's output for this step.
        sampled: like ``tokens``, a token drawn from softmax(logits) at every position.
        noise: (B, N) standard Gumbel noise.
        step, steps: t (0-based) and T.
        n_start: int or LongTensor (B,), the number of unknown positions when decoding began.
        choice_temperature: τ, the scale of the noise added to the confidence.

    Returns the new grid, like ``tokens``: ``sampled`` at the unknown positions, ``tokens`` elsewhere, with
    the n least-confident positions of each row set back to ``mask_id``, where (u = unknown positions now)

        confidence = Σ_g log_softmax(logits)[chosen token] + τ·(1 − (t+1)/T)·noise,   +∞ at known positions
        n = max(1, min(u − 1, ⌊γ((t+1)/T)·n_start⌋)) for t < T − 1 (0 when u = 0),    n = 0 at t = T − 1
    """
    grouped = tokens.dim() == 3
    tok, smp = (tokens, sampled) if grouped else (tokens[..., None], sampled[..., None])  # (B, N, G)
    logp = (logits if grouped else logits[..., None, :]).float().log_softmax(-1)         # (B, N, G, K)
    unknown = (tok == mask_id).any(-1)                                                     # (B, N)
    new = torch.where(unknown[..., None], smp, tok)                                        # (B, N, G)
    ratio = (step + 1) / steps
    # confidence = Σ_g log p(chosen token) + τ(1 − ratio)·Gumbel; already known positions +∞
    conf = logp.gather(-1, new[..., None])[..., 0].sum(-1)                                 # (B, N)
    conf = conf + choice_temperature * (1 - ratio) * noise
    conf = conf.masked_fill(~unknown, float("inf"))
    u = unknown.sum(-1)                                                                    # (B,)
    if step >= steps - 1:
        n = torch.zeros_like(u)
    else:
        n_start = torch.as_tensor(n_start, device=u.device).long().expand_as(u)
        # n = max(1, min(u − 1, ⌊γ(ratio)·n_start⌋)), 0 when nothing is unknown
        n = torch.floor(cosine_schedule(ratio) * n_start).long()
        n = torch.maximum(torch.ones_like(n), torch.minimum(u - 1, n))
        n = torch.where(u > 0, n, torch.zeros_like(n))
    remask = select_to_remask(conf, n)                                                     # (B, N)
    new = new.masked_fill(remask[..., None], mask_id)
    return new if grouped else new[..., 0]


def _guidance_labels(model, labels, batch_size, guidance, device):
    """The (2B,) labels [c; ∅] of a guided pass (∅ = "no class"), or None when ``guidance`` is 0."""
    if not guidance:
        return None
    if model.num_classes is None or labels is None:
        raise ValueError("guidance needs a class-conditional model (num_classes=C, trained with label_drop > 0) "
                         "and labels; pass guidance=0 for unconditional sampling.")
    cond = torch.as_tensor(labels, device=device).long().reshape(-1).expand(batch_size)
    return torch.cat([cond, torch.full_like(cond, model.num_classes)])


def _guide(logits, guidance):
    """(2B, ...) logits of [conditional; unconditional] rows -> (B, ...) ℓ_c + w·(ℓ_c − ℓ_u)."""
    cond, uncond = logits.float().chunk(2)
    return cond + guidance * (cond - uncond)


def _as_grid(model, flat):
    """(..., N, G) -> (..., h, w) when G = 1, else (..., h, w, G)."""
    h, w = model.grid_size
    grid = rearrange(flat, "... (h w) g -> ... h w g", h=h, w=w)
    return grid[..., 0] if model.groups == 1 else grid


@torch.no_grad()
def sample(model, batch_size, steps=8, choice_temperature=4.5, labels=None, tokens=None, return_history=False,
           generator=None, device=None, guidance=0.0, *, temperature=None):
    """MaskGIT iterative decoding (facts §8).

    Args:
        model: a bidirectional ``MaskGIT`` (causal=False).
        batch_size: B.
        steps: T, the number of forward passes (8–12 in the paper).
        choice_temperature: τ, the scale of the Gumbel noise added to the *confidence* used to choose which
            tokens stay (not a softmax temperature: the logits are never scaled); it anneals linearly,
            τ·(1 − (t+1)/T), to 0 at the last step. The official code's name and value (4.5).
        labels: class ids (B,) or one int for a class-conditional model.
        tokens: optional (B, h, w[, G]) start grid with ``model.mask_id`` at the positions to fill
            (inpainting); default all masked.
        return_history: also return {"tokens": (T, B, h, w[, G]) the grid after each step, with mask_id
            where still masked, "prediction": (T, B, h, w[, G]) the full sampled grid at each step}.
        generator: a torch.Generator on ``device`` for reproducible samples.
        guidance: w, the classifier-free guidance scale (0: none; needs labels and a model trained
            with label dropout). Each step then runs one forward pass on a doubled batch.
        temperature: the old name of ``choice_temperature`` (minimovq < 0.3); passing it raises a TypeError.

    Returns tokens (B, h, w) or (B, h, w, G), and the history when asked.
    """
    if temperature is not None:
        raise TypeError("sample(temperature=...) is now sample(choice_temperature=...): it scales the Gumbel noise on "
                        "the confidence, not the logits (sample_autoregressive keeps a true `temperature`)")
    check_sampling_args(batch_size=batch_size, steps=steps, choice_temperature=choice_temperature, guidance=guidance)
    if model.causal:
        raise ValueError("sample() decodes a bidirectional MaskGIT; use sample_autoregressive for causal=True.")
    device = device or next(model.parameters()).device
    N, G = model.num_positions, model.groups
    if tokens is None:
        cur = torch.full((batch_size, N, G), model.mask_id, dtype=torch.long, device=device)
    else:
        cur = model.flatten_tokens(tokens.to(device)).clone()
    unknown = (cur == model.mask_id).any(-1)  # (B, N): a position is masked as a whole
    cur[unknown] = model.mask_id
    n_start = unknown.sum(-1)  # (B,) tokens to generate per row
    pair = _guidance_labels(model, labels, batch_size, guidance, device)  # None without guidance
    history = {"tokens": [], "prediction": []}
    was_training = model.training
    model.eval()
    for t in range(steps):
        if pair is None:
            logits = model(cur, labels).float()  # (B, N, G, K)
        else:  # one pass over [cur; cur] with labels [c; ∅]
            logits = _guide(model(cur.repeat(2, 1, 1), pair), guidance)
        # 1. sample every position (Gumbel-max = a categorical draw)
        drawn = (logits.log_softmax(-1) + gumbel_noise(logits.shape, generator, device)).argmax(-1)  # (B, N, G)
        # 2.-3. keep the fixed tokens, score the new ones, re-mask the least confident (none at the last step,
        # whose noise is scaled by τ·(1 − T/T) = 0 and is not drawn, so the generator ends where it always did)
        last = t == steps - 1
        noise = torch.zeros(drawn.shape[:2], device=device) if last else gumbel_noise(drawn.shape[:2], generator, device)
        prediction = torch.where(unknown[..., None], drawn, cur)
        cur = decode_step(cur, logits, drawn, noise, model.mask_id, t, steps, n_start, choice_temperature=choice_temperature)
        unknown = (cur == model.mask_id).any(-1)
        if return_history:
            history["tokens"].append(cur.clone())
            history["prediction"].append(prediction)
    model.train(was_training)
    out = _as_grid(model, cur)
    if not return_history:
        return out
    return out, {k: _as_grid(model, torch.stack(v)) for k, v in history.items()}


@torch.no_grad()
def sample_autoregressive(model, batch_size, temperature=1.0, top_k=None, labels=None, generator=None,
                          use_cache=True, device=None, guidance=0.0):
    """Raster-order sampling from a ``causal=True`` model: N sequential forward passes.

    With ``use_cache`` every step feeds only the newest token and reuses the cached keys/values of the
    earlier ones (the fair baseline); without it every step re-runs the whole prefix. At each position
    the logits are divided by ``temperature`` (0 = greedy) and, with ``top_k``, cut to the k most likely
    codes before the draw. ``guidance`` is classifier-free guidance, as in ``sample`` (the cache then
    holds the conditional and the unconditional rows). Returns tokens (B, h, w) or (B, h, w, G).
    """
    check_sampling_args(batch_size=batch_size, temperature=temperature, top_k=top_k, guidance=guidance)
    if not model.causal:
        raise ValueError("sample_autoregressive needs MaskGIT(..., causal=True); use sample() for MaskGIT.")
    device = device or next(model.parameters()).device
    N, G = model.num_positions, model.groups
    out = torch.zeros(batch_size, N, G, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    pair = _guidance_labels(model, labels, batch_size, guidance, device)
    rows = 1 if pair is None else 2  # guided: [conditional; unconditional] rows share one pass and one cache
    labels = labels if pair is None else pair
    cache = model.new_cache(rows * batch_size, device=device) if use_cache else None
    for i in range(N):
        if use_cache:
            prev = out[:, i - 1].repeat(rows, 1) if i else None
            logits = model.decode_step(prev, cache, labels)  # (rows·B, G, K)
        else:
            logits = model(out[:, : i + 1].repeat(rows, 1, 1), labels)[:, i]  # out[:, i] is not an input
        logits = logits.float() if pair is None else _guide(logits, guidance)
        if top_k is not None:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if temperature == 0:
            out[:, i] = logits.argmax(-1)
        else:
            out[:, i] = (logits / temperature + gumbel_noise(logits.shape, generator, device)).argmax(-1)
    model.train(was_training)
    return _as_grid(model, out)
