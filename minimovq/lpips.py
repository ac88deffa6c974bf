"""LPIPS v0.1 with a VGG16 trunk: the perceptual loss of VQGAN (Zhang et al. 2018).

Two images are compared through the features of an ImageNet classifier instead of pixel by pixel:

1. scale both inputs, ``x' = (x - shift) / scale``;
2. take the VGG16 features at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3;
3. unit-normalise every feature vector over its channels, ``f / (‖f‖₂ + 1e-10)``;
4. weight the squared difference per channel with a learned, non-negative ``w_k`` (a 1×1 conv without
   bias), average over space and **sum** over the five layers:

       LPIPS(x₀, x₁) = Σ_k  mean_{h,w}  Σ_c  w_{k,c} · (f̂₀ − f̂₁)²_{k,c,h,w}

The state-dict keys are those of taming-transformers and of the ``lpips`` package
(``scaling_layer.{shift,scale}``, ``net.slice<k>.<torchvision index>.*``, ``lin<k>.model.1.weight``), so
their weights load by name. The five ``w_k`` ship inside the ``lpips`` package; the trunk is torchvision's
ImageNet VGG16, downloaded on first use (528 MB, cached by ``torch.hub``). Where it cannot be had (offline,
or ``MINIMOVQ_OFFLINE=1``) the module warns once and uses a seeded *random* trunk. That is a weaker loss,
but still a useful one: random conv features are multi-scale edge and texture detectors, and
SBER-MoVQGAN itself trained with a random trunk (its VGG is built with ``pretrained=False``).
``LPIPS.pretrained_trunk`` says which one you got.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import socket
import threading
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from minimovq.validate import check_images

__all__ = ["LPIPS", "lpips_layer_distance", "normalize_channels", "VGG16_URL", "LPIPS_CHANNELS"]

#: torchvision's ImageNet VGG16 (``VGG16_Weights.IMAGENET1K_V1``); its ``features.*`` form the trunk.
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: channels of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# VGG16 "features" up to relu5_3: ints are 3×3 convs (each followed by a ReLU), "M" a 2×2 max-pool.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# torchvision indices [start, stop) of the five slices; each ends right after the ReLU LPIPS reads.
_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
_OFFLINE_ENV = "MINIMOVQ_OFFLINE"
_PROBE_TIMEOUT = 3.0  # seconds to wait for a TCP connection (DNS included) before calling it offline
_warned_random_trunk = False


def normalize_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise a feature map over channels. f: (B, C, H, W) -> (B, C, H, W).

    Computed in float32: under fp16 autocast ``Σ_c f²`` of relu5_3 easily passes 65504 and becomes inf.
    """
    f = f.float()
    # f̂ = f / (sqrt(Σ_c f²) + eps)
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def lpips_layer_distance(f0: torch.Tensor, f1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One layer's LPIPS term (the reference of Lesson 3's exercise `lpips_layer_distance`).

    f0, f1: (B, C, H, W) features of the two images; w: (C,) non-negative channel weights. Returns (B,):

        d(f0, f1) = mean_{h,w} Σ_c w_c · (f̂0 − f̂1)²_{c,h,w},  f̂ = f / (‖f‖₂ over c + 1e-10)
    """
    if f0.shape != f1.shape or f0.dim() != 4:
        raise ValueError(f"f0 and f1 must both be (B, C, H, W) with the same shape, got {tuple(f0.shape)} "
                         f"and {tuple(f1.shape)}; pass the same layer's features of both images")
    if w.shape != (f0.shape[1],):
        raise ValueError(f"w must have shape ({f0.shape[1]},) (one weight per channel), got {tuple(w.shape)}")
    diff = (normalize_channels(f0) - normalize_channels(f1)).pow(2)     # (B, C, H, W)
    return torch.einsum("bchw,c->bhw", diff, w.float()).mean(dim=(1, 2))  # (B,)


class ScalingLayer(nn.Module):
    """x' = (x − shift) / scale, for inputs in [-1, 1]. (B, 3, H, W) -> (B, 3, H, W)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """The learned per-channel weight ``w_k``: Dropout(0.5) then a 1×1 conv C -> 1 without bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class VGG16Trunk(nn.Module):
    """torchvision's VGG16 ``features[0:30]`` cut into ``slice1``..``slice5`` (same module indices).

    forward(x: (B, 3, H, W)) -> list of 5 maps: (B, 64, H, W), (B, 128, H/2, W/2), (B, 256, H/4, W/4),
    (B, 512, H/8, W/8), (B, 512, H/16, W/16).
    """

    def __init__(self):
        super().__init__()
        layers, c_in = [], 3
        for v in _VGG16_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c_in = v
        for k, (start, stop) in enumerate(_SLICES, start=1):
            block = nn.Sequential()
            for i in range(start, stop):
                block.add_module(str(i), layers[i])
            self.add_module(f"slice{k}", block)

    def reset_parameters(self, seed: int) -> None:
        """torchvision's VGG init (Kaiming normal, fan_out, zero bias), drawn from ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                std = (2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])) ** 0.5
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            feats.append(x)
        return feats


def _reachable(url: str, timeout: float) -> bool:
    """True when a TCP connection to the url's host opens within ``timeout`` s (DNS included)."""
    host, port = urlparse(url).hostname, urlparse(url).port or 443
    ok = threading.Event()

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.set()
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # a hung DNS lookup cannot block us past timeout
    t.start()
    t.join(timeout)
    return ok.is_set()


@functools.lru_cache(maxsize=1)
def _imagenet_vgg16_features(url: str = VGG16_URL) -> dict | None:
    """The ImageNet VGG16 ``features.*`` tensors, or None when they cannot be had (cached per process)."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not cached.exists() and not _reachable(url, _PROBE_TIMEOUT):
        return None
    try:
        sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception:  # noqa: BLE001 -- any failure (network, disk, hash) means: no pretrained trunk
        return None
    return {k: v for k, v in sd.items() if k.startswith("features.")}


def _lin_weights() -> dict:
    """The five learned ``lin<k>.model.1.weight`` tensors of LPIPS v0.1 (VGG), from the ``lpips`` package."""
    # find_spec locates the package without importing it (importing `lpips` pulls in torchvision: ~2 s)
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("minimovq.lpips needs the LPIPS v0.1 weights from the `lpips` package; "
                          "install it with `pip install lpips`, or pass lin_weights=False")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the `lpips` package; reinstall it with "
                                "`pip install --force-reinstall lpips`")
    return torch.load(path, map_location="cpu", weights_only=True)


class LPIPS(nn.Module):
    """LPIPS v0.1 (VGG) distance between images in [-1, 1].

    Args:
        pretrained: try to load torchvision's ImageNet VGG16 trunk (download on first use). False, no
            weights, or ``MINIMOVQ_OFFLINE=1`` give a random trunk drawn from ``seed`` (warns once).
        lin_weights: load the learned per-channel weights of the ``lpips`` package (else all ones).
        seed: seed of the random trunk, so every fallback LPIPS is the same function.

    Attributes: ``pretrained_trunk`` (bool), whether the trunk holds ImageNet weights.

    All parameters are frozen and the module stays in eval mode (dropout off) even inside a parent that
    calls ``.train()``, so the loss is deterministic; gradients still flow to the inputs.
    forward(x0, x1): (B, 3, H, W) each, H, W >= 16 -> (B, 1, 1, 1). ``LPIPS(x, x) = 0``.
    """

    def __init__(self, pretrained: bool = True, lin_weights: bool = True, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # building LPIPS leaves the global RNG untouched
            self.scaling_layer = ScalingLayer()
            self.net = VGG16Trunk()
            for k, c in enumerate(LPIPS_CHANNELS):
                self.add_module(f"lin{k}", NetLinLayer(c))
        self.pretrained_trunk = False
        features = None
        if pretrained and os.environ.get(_OFFLINE_ENV, "0") != "1":
            features = _imagenet_vgg16_features()
        if features is not None:
            self._load_trunk(features)
            self.pretrained_trunk = True
        else:
            self.net.reset_parameters(seed)
            if pretrained:
                _warn_random_trunk()
        with torch.no_grad():
            if lin_weights:
                self.load_state_dict(_lin_weights(), strict=False)
            else:
                for k in range(len(LPIPS_CHANNELS)):
                    getattr(self, f"lin{k}").model[1].weight.fill_(1.0)
        self.requires_grad_(False)
        self.eval()

    def _load_trunk(self, features: dict) -> None:
        """Copy torchvision ``features.<i>.*`` into ``net.slice<k>.<i>.*``."""
        mapped = {}
        for k, (start, stop) in enumerate(_SLICES, start=1):
            for i in range(start, stop):
                for name in ("weight", "bias"):
                    if f"features.{i}.{name}" in features:
                        mapped[f"slice{k}.{i}.{name}"] = features[f"features.{i}.{name}"]
        self.net.load_state_dict(mapped, strict=True)

    def train(self, mode: bool = True) -> "LPIPS":
        """Always eval: LPIPS is a fixed metric, its dropout must stay off."""
        return super().train(False)

    def _check(self, x0: torch.Tensor, x1: torch.Tensor) -> None:
        # reconstructions are not clamped, so only shapes and dtypes are checked, not the range
        check_images(x0, channels=3, check_range=False, name="LPIPS input x0")
        check_images(x1, channels=3, check_range=False, name="LPIPS input x1")
        if x0.shape != x1.shape:
            raise ValueError(f"LPIPS compares two images of the same shape, got {tuple(x0.shape)} and "
                             f"{tuple(x1.shape)}; resize one to the other's size")
        if min(x0.shape[-2:]) < 16:
            raise ValueError(f"LPIPS needs images of at least 16×16 px (four 2× poolings), got "
                             f"{tuple(x0.shape[-2:])}; upsample them, e.g. F.interpolate(x, size=32)")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five VGG feature maps of x (B, 3, H, W) in [-1, 1], after the scaling layer."""
        return self.net(self.scaling_layer(x))

    def layer_distances(self, x0: torch.Tensor, x1: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer distance maps before the spatial mean: 5 tensors (B, 1, H/2^k, W/2^k), k = 0..4."""
        self._check(x0, x1)
        maps = []
        for k, (f0, f1) in enumerate(zip(self.features(x0), self.features(x1), strict=True)):
            diff = (normalize_channels(f0) - normalize_channels(f1)).pow(2)   # (B, C_k, H_k, W_k)
            lin = getattr(self, f"lin{k}")
            maps.append(lin(diff.to(lin.model[1].weight.dtype)).float())    # (B, 1, H_k, W_k)
        return maps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """LPIPS(x0, x1) = Σ_k mean_{h,w} lin_k((f̂0_k − f̂1_k)²). (B, 3, H, W) × 2 -> (B, 1, 1, 1), float32."""
        return sum(d.mean(dim=(2, 3), keepdim=True) for d in self.layer_distances(x0, x1))


def _warn_random_trunk() -> None:
    global _warned_random_trunk
    if _warned_random_trunk:
        return
    _warned_random_trunk = True
    warnings.warn(
        "LPIPS: the ImageNet VGG16 weights could not be loaded (offline, or MINIMOVQ_OFFLINE=1), so the "
        "trunk is random (seeded). The loss still works, like SBER-MoVQGAN's own random-trunk LPIPS, but "
        "it is weaker than the real metric. Connect to the internet (or place vgg16-397923af.pth in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'}) to use the pretrained trunk.",
        UserWarning, stacklevel=3)
