"""VQGAN (Esser, Rombach & Ommer 2021): a convolutional autoencoder with a vector-quantized bottleneck.

The model alone — the perceptual and adversarial losses are separate modules (``minimovq.lpips``,
``minimovq.losses``). It takes taming-transformers' ``ddconfig``, ``n_embed`` and ``embed_dim`` unchanged and
has taming's state-dict keys, so a released taming checkpoint loads with ``strict=True`` once its ``loss.*``
entries are dropped (:meth:`VQGAN.from_pretrained`)::

    model = VQGAN.from_config("tiny")                       # a lesson-sized model
    z_q, vq_loss, indices = model.encode(x)               # x: (B, 3, H, W) in [-1, 1]
    x_hat, vq_loss, indices = model(x)                     # named tuples: model(x).x_hat
    x_hat = model.decode_indices(indices)                   # any batch size and grid

Data flow: ``z_q, loss, idx = quantize(quant_conv(encoder(x)))`` and ``x̂ = decoder(post_quant_conv(z_q))``.
"""
from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn

from .blocks import Decoder, Encoder, NormFactory, Normalize
from .outputs import ModelOutput, QuantizerOutput
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, unwrap_state_dict
from .quantize import EMAVectorQuantizer, VectorQuantizer
from .validate import check_images

# Named configurations: {"ddconfig": taming's ddconfig, "n_embed": K, "embed_dim": D}.
CONFIGS: dict[str, dict[str, Any]] = {
    # taming-transformers' ImageNet VQGAN, f=16, K=1024: 72,141,699 parameters, 343 state-dict keys.
    "vqgan_imagenet_f16_1024": dict(
        ddconfig=dict(double_z=False, z_channels=256, resolution=256, in_channels=3, out_ch=3, ch=128,
                      ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0),
        n_embed=1024, embed_dim=256),
    # Lesson sizes, f=4 (32 px -> 8x8 latent). Lesson 3 uses tiny (quick, cpu) and small (gpu); base is for a
    # bigger GPU (64 px).
    "tiny": dict(
        ddconfig=dict(double_z=False, z_channels=32, resolution=32, in_channels=3, out_ch=3, ch=32,
                      ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0),
        n_embed=128, embed_dim=32),
    "small": dict(
        ddconfig=dict(double_z=False, z_channels=64, resolution=32, in_channels=3, out_ch=3, ch=64,
                      ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0),
        n_embed=256, embed_dim=64),
    "base": dict(
        ddconfig=dict(double_z=False, z_channels=128, resolution=64, in_channels=3, out_ch=3, ch=128,
                      ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0),
        n_embed=512, embed_dim=128),
}

# Weight-EMA copies some trainers store beside the model (SBER's ``model_ema.*``); never part of the model.
EMA_PREFIXES = ("model_ema.", "ema_model.", "ema.")


class VQGAN(nn.Module):
    """Encoder -> quant_conv -> VectorQuantizer -> post_quant_conv -> Decoder.

    Args:
        ddconfig: taming's encoder/decoder config (``ch``, ``ch_mult``, ``num_res_blocks``,
            ``attn_resolutions``, ``z_channels``, ``resolution``, ``in_channels``, ``out_ch``, ``double_z``
            (must be False), ``dropout``).
        n_embed: codebook size K.  embed_dim: code dimension D (the quantizer works on D channels).
        legacy: taming's loss convention (β on the codebook term, the official default); ``False`` puts β on
            the commitment term as in the VQ-VAE paper. The forward value is (1 + β)·MSE either way.
        beta: the commitment weight β.  groups: multichannel quantization (MoVQ): D splits into ``groups``
            contiguous channel groups that share one codebook of (K, D / groups); indices get a last axis G.
        quantizer: use this module instead (e.g. Lesson 2's ``EMAVectorQuantizer``); it must map
            (B, D, h, w) -> (z_q, loss, indices) and provide ``get_codebook_entry(indices)``. Or a dict of
            options, ``{"class": "VectorQuantizer" | "EMAVectorQuantizer" (default the former), **options}``, e.g.
            ``{"dead_code_threshold": 50}``: built at (K, D) with ``beta``, ``legacy`` and ``groups`` from the
            arguments above unless the dict sets them (what ``config()`` saves for a non-default quantizer).
    """

    def __init__(self, ddconfig: dict[str, Any], n_embed: int, embed_dim: int, legacy: bool = False,
                 beta: float = 0.25, groups: int = 1, quantizer: nn.Module | dict[str, Any] | None = None):
        super().__init__()
        if ddconfig.get("double_z", False):
            raise ValueError("VQGAN needs ddconfig['double_z'] = False (double_z doubles the encoder output "
                             "for a Gaussian VAE posterior); set it to False")
        z_channels = ddconfig["z_channels"]
        self.ddconfig, self.n_embed, self.embed_dim = dict(ddconfig), n_embed, embed_dim
        # Registration order = state-dict order: encoder, decoder, quantize, quant_conv, post_quant_conv.
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig, norm=self._decoder_norm(embed_dim))
        if isinstance(quantizer, dict):
            quantizer = _quantizer_from_options(quantizer, n_embed, embed_dim, beta=beta, legacy=legacy, groups=groups)
        self.quantize = quantizer if quantizer is not None else VectorQuantizer(
            n_embed, embed_dim, beta=beta, legacy=legacy, groups=groups)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, kernel_size=1)

    @staticmethod
    def _decoder_norm(embed_dim: int) -> NormFactory:
        """The decoder's norm factory: plain GroupNorm for VQGAN (MoVQ overrides it with SpatialNorm)."""
        return Normalize

    @property
    def downsample_factor(self) -> int:
        """f: an H×W image becomes an (H/f)×(W/f) grid of codes."""
        return self.encoder.downsample_factor

    @property
    def last_layer(self) -> torch.Tensor:
        """``decoder.conv_out.weight``: where the loss measures gradient norms for the adaptive GAN weight."""
        return self.decoder.conv_out.weight

    def encode(self, x: torch.Tensor) -> QuantizerOutput:
        """(B, C, H, W) in [-1, 1] -> QuantizerOutput(z_q (B, D, H/f, W/f), vq_loss (), indices (B, H/f, W/f))
        (indices (B, H/f, W/f, G) with ``groups=G``)."""
        check_images(x, channels=self.encoder.in_channels, multiple_of=self.downsample_factor, name="x",
                     dtype=self.quant_conv.weight.dtype)
        # h = quant_conv(E(x)); (z_q, L_VQ, idx) = Q(h)
        h = self.quant_conv(self.encoder(x))  # (B, D, h, w)
        # Nearest-code search and the codebook loss in fp32 even under AMP: fp16 distances tie and overflow.
        with torch.autocast(device_type=h.device.type, enabled=False):
            z_q, vq_loss, indices = self.quantize(h.float())
        return QuantizerOutput(z_q, vq_loss, indices)  # a learner's quantizer may return a plain tuple

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, D, h, w) -> x̂ = decoder(post_quant_conv(z_q)), (B, out_ch, h·f, w·f), not clamped."""
        self._check_quant(z_q)
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) — or (B, h, w, G) with multichannel quantization — -> images (B, C, h·f, w·f).

        Works for any batch size and grid (the official ``decode_code`` helpers hard-code one shape)."""
        if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.int64, torch.int32):
            raise ValueError("indices must be an integer tensor (B, h, w) or (B, h, w, G) as returned by encode()")
        return self.decode(self.quantize.get_codebook_entry(indices.long()))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x (B, C, H, W) in [-1, 1] -> ModelOutput(x_hat (B, C, H, W), vq_loss (), indices)."""
        z_q, vq_loss, indices = self.encode(x)
        return ModelOutput(self.decode(z_q), vq_loss, indices)

    def _check_quant(self, z_q: torch.Tensor) -> None:
        if not isinstance(z_q, torch.Tensor) or z_q.ndim != 4 or z_q.shape[1] != self.embed_dim:
            got = tuple(z_q.shape) if isinstance(z_q, torch.Tensor) else type(z_q).__name__
            raise ValueError(f"z_q must have shape (B, {self.embed_dim}, h, w) (embed_dim={self.embed_dim}), "
                             f"got {got}; pass the first output of encode()")

    # ------------------------------------------------------------------ construction and loading
    @classmethod
    def from_config(cls, name: str | dict[str, Any], **overrides: Any) -> "VQGAN":
        """Build a named configuration from this class's module ``CONFIGS`` (or a config dict, as saved by
        :meth:`save`); keyword arguments override it (e.g. ``groups=4`` or ``n_embed=512``)."""
        cfg = copy.deepcopy(name) if isinstance(name, dict) else cls._config(name)
        return cls(**{**cfg, **overrides})

    @classmethod
    def _configs(cls) -> dict[str, dict[str, Any]]:
        """The named configurations this class knows."""
        return CONFIGS

    @classmethod
    def _config(cls, name: str) -> dict[str, Any]:
        configs = cls._configs()
        if name not in configs:
            raise ValueError(f"unknown config {name!r}; expected one of {', '.join(configs)}")
        return copy.deepcopy(configs[name])

    @classmethod
    def from_pretrained(cls, name: str, checkpoint_path: str | os.PathLike | None = None,
                        **overrides: Any) -> "VQGAN":
        """A released model by name; one convention for VQGAN and MoVQ.

        ``name`` is a named configuration (``VQGAN.from_pretrained("vqgan_imagenet_f16_1024", path)``,
        ``MoVQ.from_pretrained("67M")``) or a config dict (taming keeps its config in a separate .yaml file).
        ``checkpoint_path`` is the local file; without it, MoVQ downloads SBER's release from Hugging Face, and
        VQGAN (whose release has no stable download address) raises an error that says where to get it.

        The file is read with ``weights_only=True``, a Lightning ``{"state_dict": ...}`` is unwrapped, ``loss.*``
        and weight-EMA (``model_ema.*``) entries are dropped, and the rest must match the model exactly
        (``strict=True``). The model comes back in eval mode with ``legacy=True`` (the official loss
        convention); keyword arguments override the config."""
        if isinstance(name, os.PathLike) or (isinstance(name, str) and (os.sep in name or name.endswith((".ckpt", ".pt", ".pth")))):
            raise ValueError(f"from_pretrained takes a release name first, got the path {str(name)!r}; call "
                             f"{cls.__name__}.from_pretrained(<name>, checkpoint_path={str(name)!r}) with <name> one of "
                             f"{', '.join(cls._configs())}")
        cfg = copy.deepcopy(name) if isinstance(name, dict) else cls._config(name)
        label = name if isinstance(name, str) else "custom"
        how = cls._pretrained_how(label)
        if checkpoint_path is None:
            if not isinstance(name, str):
                raise ValueError("a config dict needs checkpoint_path=: there is nothing to download for it")
            checkpoint_path = cls._fetch_pretrained(name)
        model = cls(**{**cfg, "legacy": True, **overrides})
        load_official_weights(model, checkpoint_path, hint=how)
        return model.eval()

    @classmethod
    def _pretrained_how(cls, name: str) -> str:
        """What to do when the weights cannot be fetched automatically."""
        return (f"download a taming-transformers checkpoint for {name!r} (the 'last.ckpt' linked from the "
                f"taming-transformers README) and pass {cls.__name__}.from_pretrained({name!r}, "
                f"checkpoint_path='path/to/last.ckpt')")

    @classmethod
    def _fetch_pretrained(cls, name: str) -> str:
        """taming's releases live on a university file server without stable file addresses: no download."""
        raise CheckpointError(f"{cls.__name__}.from_pretrained({name!r}) needs checkpoint_path=: "
                              f"{cls._pretrained_how(name)}")

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model. A minimovq quantizer with options beyond β, legacy and
        groups (an EMA codebook, restarts, l2 codes, ...) adds ``quantizer``: those options (see
        ``VectorQuantizer.options()``); a quantizer of your own is not recorded (rebuild it, then ``load_state_dict``)."""
        q = self.quantize
        cfg = dict(ddconfig=copy.deepcopy(self.ddconfig), n_embed=self.n_embed, embed_dim=self.embed_dim,
                   groups=getattr(q, "groups", 1), legacy=getattr(q, "legacy", False), beta=getattr(q, "beta", 0.25))
        if callable(getattr(q, "options", None)):
            extra = {k: v for k, v in q.options().items() if k not in cfg}
            if extra != {"class": "VectorQuantizer"}:
                cfg["quantizer"] = extra
        return cfg

    def save(self, path: str | os.PathLike, **extra: Any) -> Path:
        """Atomically save ``{"class": class name, "config": config(), "groups": G, "model": state_dict, **extra}``
        (``extra``: e.g. the dataset and image size). :meth:`from_checkpoint` rebuilds the model from it, and so
        does ``from_config(state["config"])`` + ``load_state_dict(state["model"])``."""
        state = {"class": type(self).__name__, "config": self.config(), "groups": self.config()["groups"],
                 "model": self.state_dict(), **extra}
        return save_checkpoint(state, path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "VQGAN":
        """Rebuild a model written by :meth:`save` (``weights_only=True``), e.g. Lesson 4's ``lesson4_movq.pt``."""
        state = load_checkpoint(path, map_location=map_location)
        if state.get("class") != cls.__name__ or not isinstance(state.get("config"), dict):
            raise ValueError(f"{path} holds {state.get('class', 'no saved model')!r}, expected a {cls.__name__} "
                             f"written by {cls.__name__}.save(); use the matching class's from_checkpoint")
        model = cls.from_config(state["config"])
        model.load_state_dict(state["model"], strict=True)
        return model

    def summary(self, image_size: int | None = None, batch_size: int = 1, depth: int = 4, **kwargs: Any):
        """Print and return a torchinfo layer table (input/output shapes, kernels, parameters), in the form of
        the SBER-MoVQGAN model card. Runs one forward pass at ``image_size`` (default: ``resolution``)."""
        try:
            import torchinfo
        except ImportError as e:
            raise ImportError("summary() needs torchinfo: pip install torchinfo "
                              "(or pip install 'minimovq[dev]')") from e
        size = image_size or self.ddconfig["resolution"]
        device = next(self.parameters()).device
        kwargs.setdefault("col_names", ("input_size", "output_size", "kernel_size", "num_params"))
        return torchinfo.summary(self, input_size=(batch_size, self.encoder.in_channels, size, size),
                                 depth=depth, device=device, **kwargs)


def _quantizer_from_options(options: dict[str, Any], n_embed: int, embed_dim: int, **defaults: Any) -> nn.Module:
    """A fresh minimovq quantizer of (K, D) from ``{"class": ..., **options}`` (see ``_Quantizer.options``);
    ``defaults`` (the model's beta, legacy, groups) fill in what the options leave out, where the class takes them."""
    opts = dict(options)
    classes = {"VectorQuantizer": VectorQuantizer, "EMAVectorQuantizer": EMAVectorQuantizer}
    name = opts.pop("class", "VectorQuantizer")
    if name not in classes:
        raise ValueError(f"unknown quantizer class {name!r} in the config; expected one of {', '.join(classes)}")
    accepted = inspect.signature(classes[name]).parameters
    return classes[name](n_embed, embed_dim, **{**{k: v for k, v in defaults.items() if k in accepted}, **opts})


def from_config(name: str, **overrides: Any) -> VQGAN:
    """``VQGAN.from_config(name, **overrides)``."""
    return VQGAN.from_config(name, **overrides)


def read_state_dict(path: str | os.PathLike, drop_prefixes: Iterable[str] = ("loss.",) + EMA_PREFIXES,
                    hint: str = "check the path") -> dict[str, torch.Tensor]:
    """Read a (Lightning or plain) checkpoint with ``weights_only=True`` and return its model tensors, without
    the entries whose key starts with one of ``drop_prefixes``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}: {hint}")
    return unwrap_state_dict(load_checkpoint(path), drop_prefixes=tuple(drop_prefixes))


def load_official_weights(model: nn.Module, path: str | os.PathLike, hint: str = "check the path") -> None:
    """Load a released checkpoint into ``model`` strictly, after dropping loss and weight-EMA entries.

    Raises ``ValueError`` listing missing, unexpected and mis-shaped keys when the file does not match the
    model's configuration."""
    sd = read_state_dict(path, hint=hint)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "") if xs else "none"
        raise ValueError(f"{path} does not match this {type(model).__name__} configuration — missing keys: "
                         f"{show(missing)}; unexpected keys: {show(unexpected)}; shape mismatches: "
                         f"{show(shapes)}. Build the model with the config the checkpoint was trained with.")
    model.load_state_dict(sd, strict=True)
