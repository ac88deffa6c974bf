"""The per-model plans of :mod:`minimovq.figures`: which measured modules become which boxes.

Each ``*_diagram(model, inputs)`` runs one traced forward pass (:func:`minimovq.figures.trace_shapes`) and returns a
:class:`~minimovq.figures.Diagram`: the VAE (Lesson 1), the VQ-VAE (Lesson 2), VQGAN / MoVQ (Lessons 3, 4) and MaskGIT
(Lesson 5). Every shape in a diagram is read from a hook, never computed from the config.
"""
from __future__ import annotations

import torch
from torch import nn

from .diagram import Diagram, Stage, _fmt, trace_shapes

__all__ = ["vae_diagram", "vqvae_diagram", "vqgan_diagram", "maskgit_diagram"]


ACTIVATIONS = (nn.ReLU, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)


def _one(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """One sample of an image batch (or a single (C, H, W) image), on the model's device."""
    x = x[None] if x.ndim == 3 else x[:1]
    return x.to(next(model.parameters()).device)


def _describe(m: nn.Module, name: str = "") -> str:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        k, s = m.kernel_size[0], m.stride[0]
        what = name or ("ConvT" if isinstance(m, nn.ConvTranspose2d) else "Conv")
        return f"{what} {k}×{k}{f' /{s}' if s > 1 and what != 'ConvT' else ''}{' ×2' if what == 'ConvT' else ''}" \
               f"  {m.in_channels}→{m.out_channels}"
    if isinstance(m, nn.Linear):
        return f"{name or 'Linear'} {m.in_features}→{m.out_features}"
    if type(m).__name__ == "ResidualStack":
        return f"ResidualStack: {len(m.blocks)} × (3×3, 1×1) + skip, ReLU"
    return name or type(m).__name__


def _sequential(rec: dict, prefix: str, seq: nn.Module, stages: list[Stage]) -> None:
    """One stage per child of ``seq``; an activation is folded into the label of the stage before it."""
    for name, child in seq.named_children():
        if isinstance(child, ACTIVATIONS) and stages:
            stages[-1].label += f" + {type(child).__name__}"
            continue
        kind = "resnet" if type(child).__name__ == "ResidualStack" else "conv"
        stages.append(Stage(f"{prefix}.{name}", _describe(child), rec[f"{prefix}.{name}"]["out"][0], kind))


def _u_shape(title: str, enc: list[Stage], mid: list[Stage], dec: list[Stage], names=("encoder", "bottleneck",
             "decoder")) -> Diagram:
    """Encoder down the left, the bottleneck at the bottom in the middle, the decoder up the right."""
    bottom = max(len(enc), len(dec)) - 1
    rows = {names[0]: [bottom - len(enc) + 1 + i for i in range(len(enc))], names[1]: [bottom] * len(mid),
            names[2]: [bottom - i for i in range(len(dec))]}
    columns, xpos = dict(zip(names, (enc, mid, dec), strict=True)), dict(zip(names, (0.0, 1.0, 2.0), strict=True))
    return Diagram(title, columns, rows, xpos, links=[(names[0], len(enc) - 1, names[1], 0), (names[1], len(mid) - 1, names[2], 0)])


def vae_diagram(model: nn.Module, x: torch.Tensor) -> Diagram:
    """Lesson 1's VAE: enc convs -> to_stats [μ, log σ²] -> z = μ + σ·ε -> from_z -> dec (transposed convs)."""
    x = _one(x, model)
    rec = trace_shapes(model, lambda: model(x))
    enc = [Stage("x", "x: input image", tuple(x.shape), "io")]
    _sequential(rec, "enc", model.enc, enc)
    stats = rec["to_stats"]["out"][0]
    enc.append(Stage("to_stats", _describe(model.to_stats, "flatten, Linear"), stats, "linear",
                     note=f"[μ, log σ²]: 2 × {stats[-1] // 2}"))
    z = rec["from_z"]["in"][0]
    mid = [Stage("z", "z = μ + σ·ε", z, "quant", note="ε ~ N(0, I)")]
    dec = [Stage("from_z", _describe(model.from_z), rec["from_z"]["out"][0], "linear")]
    _sequential(rec, "dec", model.dec, dec)
    dec[0].note = "reshape → " + _fmt(rec["dec"]["in"][0])
    dec[-1].label += " → x̂"
    return _u_shape(f"VAE: a {z[-1]}-dimensional Gaussian latent for a {x.shape[-2]}×{x.shape[-1]} image", enc,
                    mid, dec, ("encoder", "latent", "decoder"))


def _quantize_stage(rec: dict, model: nn.Module) -> Stage:
    q = rec["quantize"]["out"]
    return Stage("quantize", f"{type(model.quantize).__name__}  K={model.n_embed}", q[0], "quant",
                 note=f"z_q; indices {_fmt(q[-1])}")


def vqvae_diagram(model: nn.Module, x: torch.Tensor) -> Diagram:
    """Lesson 2's VQ-VAE: encoder -> quant_conv -> quantize -> decoder."""
    x = _one(x, model)
    rec = trace_shapes(model, lambda: model(x))
    enc = [Stage("x", "x: input image", tuple(x.shape), "io")]
    _sequential(rec, "encoder", model.encoder, enc)
    enc.append(Stage("quant_conv", _describe(model.quant_conv, "quant_conv"), rec["quant_conv"]["out"][0]))
    dec: list[Stage] = []
    _sequential(rec, "decoder", model.decoder, dec)
    dec[-1].label += " → x̂"
    z_q = rec["quantize"]["out"][0]
    return _u_shape(f"VQ-VAE: a {x.shape[-2]}×{x.shape[-1]} image → {z_q[-2]}×{z_q[-1]} codes of width "
                    f"D={z_q[1]}", enc, [_quantize_stage(rec, model)], dec,
                    ("encoder", "quantizer", "decoder"))


def _norm_name(m: nn.Module) -> str:
    if getattr(m, "conditional", False):
        return f"{type(m).__name__}(·, z_q)"
    return f"GroupNorm({m.num_groups})" if isinstance(m, nn.GroupNorm) else type(m).__name__


def _part(name: str, m: nn.Module) -> str:
    if "norm" in name:
        return f"{name} {_norm_name(m)}"
    return f"{name}(p={m.p})" if isinstance(m, nn.Dropout) else _describe(m, name)


def _block_stages(rec: dict, part: str, conditional: list[str]) -> list[Stage]:
    """The stages of taming's Encoder / Decoder in call order: conv_in, ResnetBlocks, AttnBlocks, resamplers,
    norm_out, conv_out; each with the conditional norms (SpatialNorm) inside it."""
    out = []
    for name, r in rec.items():
        local = name[len(part) + 1:]
        m, cls = r["module"], type(r["module"]).__name__
        if not name.startswith(part + "."):
            continue
        if cls == "ResnetBlock":
            label, kind = f"ResnetBlock {m.in_channels}→{m.out_channels}", "resnet"
        elif cls == "AttnBlock":
            label, kind = "AttnBlock: self-attention over H·W", "attn"
        elif cls in ("Downsample", "Upsample"):
            label = "Downsample: 3×3 conv /2" if cls == "Downsample" else "Upsample: nearest ×2, 3×3 conv"
            kind = "resample"
        elif local in ("conv_in", "conv_out"):
            label, kind = _describe(m, local), "conv"
        elif local == "norm_out":
            label, kind = f"norm_out: {_norm_name(m)} + swish", "norm"
        else:
            continue
        inside = tuple(n for n in conditional if n == name or n.startswith(name + "."))
        out.append(Stage(name, label, r["out"][0], kind, note=local, z_q=inside))
    return out


def vqgan_diagram(model: nn.Module, x: torch.Tensor) -> Diagram:
    """Lesson 3's VQGAN and Lesson 4's MoVQ: Encoder -> quant_conv -> quantize -> post_quant_conv -> Decoder."""
    x = _one(x, model)
    rec = trace_shapes(model, lambda: model(x))
    # conditional norms (SpatialNorm) say so with a class attribute (the Decoder's ``conditional`` is a property)
    conditional = [n for n, r in rec.items() if getattr(type(r["module"]), "conditional", False) is True]
    enc = [Stage("x", "x: input image", tuple(x.shape), "io")] + _block_stages(rec, "encoder", conditional)
    enc.append(Stage("quant_conv", _describe(model.quant_conv, "quant_conv"), rec["quant_conv"]["out"][0]))
    dec = [Stage("post_quant_conv", _describe(model.post_quant_conv, "post_quant_conv"),
                 rec["post_quant_conv"]["out"][0])] + _block_stages(rec, "decoder", conditional)
    dec[-1].label += " → x̂"
    z_q = rec["quantize"]["out"][0]
    f = x.shape[-1] // z_q[-1]
    kind = type(model).__name__
    title = (f"{kind}: f = {x.shape[-1]}/{z_q[-1]} = {f}, a {x.shape[-2]}×{x.shape[-1]} image → {z_q[-2]}×{z_q[-1]} "
             f"codes (K={model.n_embed}, D={z_q[1]})")
    d = _u_shape(title, enc, [_quantize_stage(rec, model)], dec, ("encoder", "quantizer", "decoder"))
    d.info.update(f=f, z_q=z_q, conditional=conditional,
                  z_q_in={n: rec[n]["in"][1] for n in conditional}, f_in={n: rec[n]["in"][0] for n in conditional})
    blocks = [n for n, r in rec.items() if n.startswith("decoder.") and type(r["module"]).__name__ == "ResnetBlock"]
    block = next((n for n in blocks if n + ".nin_shortcut" in rec), blocks[0])  # one with a shortcut conv if any
    parts = [_part(c.split(".")[-1], rec[c]["module"]) for c in rec
             if c.startswith(block + ".") and "." not in c[len(block) + 1:]]
    d.notes.append("ResnetBlock, in call order (swish after each norm): " + " → ".join(parts)
                   + "; output = shortcut(x) + h (nin_shortcut, a 1×1 conv, only where the channels change)")
    if conditional:
        d.z_q_source = ("quantizer", 0)
        d.title += f"\nz_q enters the decoder at {len(conditional)} SpatialNorms (red), nearest-upsampled to each H×W"
    return d


def maskgit_diagram(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> Diagram:
    """Lesson 5's MaskGIT: the class prefix and the summed group embeddings of the tokens, plus the position
    embeddings, through the transformer blocks to G output heads of K logits per position."""
    tokens = tokens[:1].to(model.pos_emb.device)
    labels = None if labels is None else torch.as_tensor(labels).reshape(-1)[:1].to(model.pos_emb.device)
    rec = trace_shapes(model, lambda: model(tokens, labels))
    G, K, C = model.groups, model.n_embed, model.num_classes or 0
    emb = rec["tok_emb"]["out"][0]  # (B, L, G, dim)
    prefix = [Stage("labels", "class label" if labels is not None else "no label: start / 'no class'",
                    rec["prefix_emb"]["in"][0], "io"),
              Stage("prefix_emb", f"prefix_emb: {C} classes + 'no class'", rec["prefix_emb"]["out"][0], "embed",
                    note="→ 1 prefix slot")]
    flat = rec["tok_emb"]["in"][0]
    toks = [Stage("tokens", f"tokens ([MASK] = {model.mask_id})", tuple(tokens.shape), "io"),
            Stage("flatten", "raster order, + group offsets g·(K+1)", flat, "io", note="(B, positions, G)"),
            Stage("tok_emb", f"tok_emb: G={G} tables of K+1={K + 1} rows", emb, "embed"),
            Stage("sum", f"Σ over the G={G} group embeddings", emb[:2] + emb[3:], "embed")]
    seq = rec["blocks.0"]["in"][0] if model.depth else rec["ln_f"]["in"][0]
    body = [Stage("input", "concat [prefix; positions] + pos_emb", seq, "embed",
                  note=f"pos_emb {_fmt(tuple(model.pos_emb.shape), False)}: one vector per slot")]
    for i in range(model.depth):
        body.append(Stage(f"blocks.{i}", f"Block {i}: x + Attn(LN x), x + MLP(LN x)", rec[f"blocks.{i}"]["out"][0],
                          "resnet", note="causal attention" if model.causal else "bidirectional attention"))
    body += [Stage("ln_f", ("" if model.causal else "drop the prefix slot, ") + "ln_f: LayerNorm",
                   rec["ln_f"]["out"][0], "norm"),
             Stage("head", f"head: Linear {model.dim}→G·K = {G}·{K}", rec["head"]["out"][0], "head"),
             Stage("logits", f"logits: G={G} heads × K={K} per position", rec[""]["out"][0], "head",
                   note="heads independent given the context")]
    rows = {"class prefix": [0, 1], "tokens": [0, 1, 2, 3], "transformer": [4.4 + i for i in range(len(body))]}
    title = (f"MaskGIT{' (causal)' if model.causal else ''}: a {model.grid_size[0]}×{model.grid_size[1]} grid, "
             f"N={model.num_positions} positions × G={G} tokens, dim={model.dim}, depth={model.depth}")
    return Diagram(title, {"class prefix": prefix, "tokens": toks, "transformer": body}, rows,
                   {"class prefix": 0.0, "tokens": 1.0, "transformer": 0.5},
                   links=[("class prefix", 1, "transformer", 0), ("tokens", 3, "transformer", 0)],
                   info={"tok_emb": emb, "sequence": seq, "logits": rec[""]["out"][0]})
