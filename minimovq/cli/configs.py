"""The named model configurations of ``python -m minimovq train``, and rebuilding a model from its checkpoint.

=========  ==========================================  ===========================  =================
--model    --config names                              default config / quantizer   default GAN loss
=========  ==========================================  ===========================  =================
vqvae      tiny, small, sonnet (Sonnet's CIFAR-10),     small / ema                  (no GAN)
           paper (the paper's 256 channels)
vqgan      tiny, small, base, vqgan_imagenet_f16_1024   small / vq                   taming
movq       tiny, small, base, 67M, 102M, 270M           small / vq                   sber
=========  ==========================================  ===========================  =================

Every run stores its options in its checkpoint (``state["args"]``), so :func:`load_tokenizer` rebuilds exactly
the trained model — whatever its quantizer — from ``DIR/last.pt`` alone.
"""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..checkpoint import load_checkpoint
from ..movq import CONFIGS as MOVQ_CONFIGS
from ..movq import MoVQ
from ..quantize import EMAVectorQuantizer, VectorQuantizer
from ..vqgan import CONFIGS as VQGAN_CONFIGS
from ..vqgan import VQGAN
from ..vqvae import VQVAE

__all__ = ["MODELS", "VQVAE_CONFIGS", "DEFAULTS", "configs_of", "check_model_options", "build_tokenizer",
           "load_tokenizer"]

# VQVAE constructor arguments (all f=4): hidden, res_hidden, num_res_layers, embed_dim D, n_embed K.
VQVAE_CONFIGS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden=32, res_hidden=16, num_res_layers=1, embed_dim=16, n_embed=64),
    "small": dict(hidden=64, res_hidden=32, num_res_layers=2, embed_dim=32, n_embed=256),
    "sonnet": dict(hidden=128, res_hidden=32, num_res_layers=2, embed_dim=64, n_embed=512),
    "paper": dict(hidden=256, res_hidden=64, num_res_layers=2, embed_dim=64, n_embed=512),
}
MODELS = ("vqvae", "vqgan", "movq")
# per model: (config, quantizer, GAN loss recipe, learning rate)
DEFAULTS: dict[str, dict[str, Any]] = {
    "vqvae": dict(config="small", quantizer="ema", loss=None, lr=2e-4),
    "vqgan": dict(config="small", quantizer="vq", loss="taming", lr=1e-4),
    "movq": dict(config="small", quantizer="vq", loss="sber", lr=1e-4),
}


def configs_of(model: str) -> dict[str, dict[str, Any]]:
    """The named configurations of ``model`` ("vqvae", "vqgan" or "movq")."""
    check_model_options(model)
    return {"vqvae": VQVAE_CONFIGS, "vqgan": VQGAN_CONFIGS, "movq": MOVQ_CONFIGS}[model]


def check_model_options(model: str, config: str | None = None, quantizer: str | None = None,
                        groups: int = 1) -> None:
    """Raise ``ValueError`` naming the problem and the fix for an unknown model or config, a bad quantizer, or
    a group count that does not divide the code width — before anything is built."""
    if model not in MODELS:
        raise ValueError(f"unknown --model {model!r}; choose one of {', '.join(MODELS)}")
    if config is not None:
        names = configs_of(model)
        if config not in names:
            raise ValueError(f"unknown --config {config!r} for --model {model}; choose one of {', '.join(names)}")
        dim = names[config]["embed_dim"]
        if groups < 1 or dim % groups:
            divisors = [g for g in range(1, dim + 1) if dim % g == 0]
            raise ValueError(f"--groups {groups} does not divide the {dim}-channel codes of {model}/{config}; "
                             f"pick one of {divisors}")
    if quantizer is not None and quantizer not in ("vq", "ema"):
        raise ValueError(f"unknown --quantizer {quantizer!r}; choose 'vq' (codebook loss) or 'ema' (online k-means)")


def build_tokenizer(model: str, config: str, quantizer: str, groups: int = 1, dead_code: int = 0) -> nn.Module:
    """A fresh tokenizer: ``model`` with the named ``config``, ``quantizer`` ("vq" or "ema"), ``groups`` codes per
    position and dead-code restarts after ``dead_code`` unused steps (0: off)."""
    check_model_options(model, config, quantizer, groups)
    cfg = configs_of(model)[config]
    q_opts = dict(groups=groups, dead_code_threshold=dead_code)
    if model == "vqvae":
        return VQVAE(**cfg, quantizer=quantizer, quantizer_kwargs=q_opts)
    cls = VQGAN if model == "vqgan" else MoVQ
    q_cls = EMAVectorQuantizer if quantizer == "ema" else VectorQuantizer
    return cls.from_config(config, quantizer=q_cls(cfg["n_embed"], cfg["embed_dim"], **q_opts))


def model_record(net: nn.Module, args: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint stores beside ``"model"`` to be rebuilt: the run's options and, for VQGAN/MoVQ, the
    ``class``/``config`` entries that ``VQGAN.save`` writes (so ``MoVQ.from_checkpoint`` reads a vq-quantizer
    run too)."""
    record: dict[str, Any] = {"args": dict(args)}
    if isinstance(net, VQGAN):
        record.update({"class": type(net).__name__, "config": net.config(), "groups": net.config()["groups"]})
    return record


def load_tokenizer(path: str | os.PathLike, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained tokenizer from ``path``: a ``python -m minimovq train`` checkpoint (``DIR/last.pt``) or a
    file written by ``VQGAN.save`` / ``MoVQ.save``. Returns ``(model in eval mode, the checkpoint dict)``."""
    state = load_checkpoint(path, map_location=map_location)
    args = state.get("args")
    if isinstance(args, dict) and "model" in args and isinstance(args["model"], str):
        net = build_tokenizer(args["model"], args["config"], args["quantizer"], args.get("groups", 1),
                              args.get("dead_code", 0))
    elif state.get("class") in ("VQGAN", "MoVQ") and isinstance(state.get("config"), dict):
        net = (VQGAN if state["class"] == "VQGAN" else MoVQ).from_config(state["config"])
    else:
        raise ValueError(f"{path} is not a tokenizer checkpoint: it has neither the 'args' of "
                         "`python -m minimovq train` nor the 'class'/'config' of VQGAN.save; pass DIR/last.pt "
                         "of a tokenizer run")
    net.load_state_dict(state["model"], strict=True)
    return net.eval(), state
