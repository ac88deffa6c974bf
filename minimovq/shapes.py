"""``shapes``: a procedural image dataset that needs no files, built so that each lesson's point is visible.

Every image is a smooth gradient background (where a VQ decoder shows repeated-patch artifacts) with one to
four flat-coloured objects with hard edges (where an MSE loss blurs). About a third of the objects carry a
texture — stripes, a checkerboard or value noise — (where the perceptual and GAN losses matter), and the
objects overlap into small compositions (something for a prior to learn).

Images are a pure function of ``(seed, split, index)``: the parameters come from a counter-based hash, not
from a stateful generator, so image 7 is the same whether you build 10 images or 10,000, and at any size
(the scene is described in image units, then rasterised). The whole dataset is rendered at construction,
in batches of tensor operations (no per-pixel Python loops), and stored as uint8 (8-bit, like a real photo).

>>> ds = ShapesDataset(n=2000, image_size=32)
>>> ds[0].shape, ds.classes[ds.labels[0]]
(torch.Size([3, 32, 32]), ...)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset

SHAPES_CLASSES = ("circle", "square", "triangle", "cross", "ring")
MAX_OBJECTS = 4                       # objects per image: 1 .. MAX_OBJECTS
FILLS = ("flat", "stripes", "checker", "noise")
_FILL_CUMPROB = (0.65, 0.77, 0.89)    # flat 65%, stripes 12%, checker 12%, noise 11%
_NOISE_GRID = 10                      # value-noise lattice over the image (10 x 10 cells)
_SPLITS = {"train": 0x5EED0001, "test": 0x5EED0002}
_M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------------------
# Counter-based randomness: uniform numbers as a hash of (key, stream, counter). Shared with the photos crops.
# ----------------------------------------------------------------------------------------------------------
def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (two multiply-xorshift rounds) on int64 tensors holding values in [0, 2**32).

    The multiplier is below 2**27, so products stay below 2**59 and never overflow int64.
    """
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def image_keys(seed: int, split: str, index: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per image, a function of (seed, split, index) only. index: (N,) int64 -> (N,) int64."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    base = _hash32(torch.tensor([(seed & _M32) ^ _SPLITS[split]], dtype=torch.int64))
    return _hash32(_hash32(index.to(torch.int64) & _M32) ^ base)


def uniform(keys: torch.Tensor, stream: int, *shape: int) -> torch.Tensor:
    """Uniform numbers in [0, 1): keys (N,) -> (N, *shape) float32. Different streams are independent."""
    count = math.prod(shape)
    salt = _hash32(torch.arange(count, dtype=torch.int64) + (stream << 20))      # (count,)
    bits = _hash32(keys[:, None] ^ salt[None, :]) >> 8                          # (N, count), 24 bits
    return (bits.float() / 2.0**24).reshape(len(keys), *shape)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] -> RGB in [0, 1]; inputs of shape (...) give (..., 3).

    Channel n in (R, G, B) = (5, 3, 1):  k = (n + 6h) mod 6,  c = v - v*s*clamp(min(k, 4 - k), 0, 1).
    """
    n = torch.tensor([5.0, 3.0, 1.0])
    k = (n + 6.0 * h[..., None]) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Rasterising one batch of scenes
# ----------------------------------------------------------------------------------------------------------
def _shape_masks(cls: torch.Tensor, uu: torch.Tensor, vv: torch.Tensor) -> torch.Tensor:
    """Inside-tests in object units (radius 1). cls: (M,), uu, vv: (M, S, S) rotated coords -> (M, S, S) bool.

    Each class is evaluated only on the objects of that class, so the cost does not grow with the classes.
    """
    mask = torch.zeros(uu.shape, dtype=torch.bool)
    for c, name in enumerate(SHAPES_CLASSES):
        sel = (cls == c).nonzero().squeeze(1)
        if len(sel) == 0:
            continue
        u, v = uu.index_select(0, sel), vv.index_select(0, sel)
        if name == "circle":
            m = u * u + v * v <= 1.0
        elif name == "square":
            m = torch.maximum(u.abs(), v.abs()) <= 0.8
        elif name == "triangle":
            # equilateral, inradius 0.65: inside all three half-planes n_j . (u, v) <= 0.65, normals 120 deg apart
            phi = [math.pi / 2 + 2 * math.pi * j / 3 for j in range(3)]
            proj = [u * math.cos(p) + v * math.sin(p) for p in phi]
            m = torch.maximum(torch.maximum(proj[0], proj[1]), proj[2]) <= 0.65
        elif name == "cross":
            au, av = u.abs(), v.abs()
            m = ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
        else:  # ring
            r2 = u * u + v * v
            m = (r2 <= 1.0) & (r2 >= 0.55**2)
        mask[sel] = m
    return mask


def _textures(keys: torch.Tensor, fill: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
              period: torch.Tensor, size: int) -> torch.Tensor:
    """Mixing weight t between an object's two colours, for textured objects (fill > 0).

    fill, period: (M,); u, v: (M, S, S) rotated coordinates in image units.  Returns t: (M, S, S) in [0, 1].
    stripes: t = floor(2u / period) mod 2;  checker: t = (floor(u / c) + floor(v / c)) mod 2 with
    c = period / 2;  noise: t = bilinear upsampling of a random 10 x 10 lattice laid over the image.
    """
    p = period[:, None, None]
    stripes = torch.floor(2.0 * u / p).remainder(2.0)
    checker = (torch.floor(2.0 * u / p) + torch.floor(2.0 * v / p)).remainder(2.0)
    t = torch.where((fill == 1)[:, None, None], stripes, checker)
    noise = (fill == 3).nonzero().squeeze(1)
    if len(noise):
        lattice = uniform(keys[noise], 40, 1, _NOISE_GRID, _NOISE_GRID)            # (Mn, 1, G, G)
        t[noise] = F.interpolate(lattice, size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    return t


def _lerp2d(corners: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear blend of four corner colours: (N, C, 2, 2) -> (N, C, S, S), exact at the corner pixels."""
    w = torch.linspace(0.0, 1.0, size)
    top = corners[..., 0, :1] + (corners[..., 0, 1:] - corners[..., 0, :1]) * w        # (N, C, S) along x
    bottom = corners[..., 1, :1] + (corners[..., 1, 1:] - corners[..., 1, :1]) * w
    return top[:, :, None, :] + (bottom - top)[:, :, None, :] * w[:, None]            # (N, C, S, S)


def sample_scenes(keys: torch.Tensor, single: bool = False) -> dict[str, torch.Tensor]:
    """Describe one scene per key (N,), in image units (the image is the unit square, x right, y down).

    ``single``: the labelled variant, one large flat-coloured object per image (radius 0.30-0.42 of the
    image width, centre within 0.42-0.58), so that the shape, and so the label, dominates what the image
    shows; the background and colours follow the same rules. Lesson 5's class-conditional prior trains on it.

    Returns tensors: ``corners`` (N, 3, 2, 2) background corner colours; per object slot (N, K): ``active``
    (the first 1..K slots are drawn, slot 0 at the back), ``cls`` (index into SHAPES_CLASSES), ``cx``, ``cy``,
    ``radius``, ``angle``, ``fill`` (index into FILLS), ``period`` (texture scale), ``noise_key``; colours
    ``color_a``, ``color_b`` (N, K, 3) in [0, 1] (a flat fill uses ``color_a``).
    """
    K = MAX_OBJECTS
    # Background: four muted corner colours around one hue.
    h0, s0, v0 = uniform(keys, 1, 3).unbind(1)
    jitter = uniform(keys, 2, 3, 2, 2) - 0.5                                         # (N, 3, 2, 2)
    hue = h0[:, None, None] + 0.3 * jitter[:, 0]
    sat = (0.1 + 0.4 * s0[:, None, None]) * (0.6 + 0.8 * (jitter[:, 1] + 0.5))
    val = (0.35 + 0.6 * v0[:, None, None] + 0.35 * jitter[:, 2]).clamp(0.05, 1.0)
    corners = rearrange(hsv_to_rgb(hue % 1.0, sat.clamp(0, 1), val), "n a b c -> n c a b")
    # Objects: saturated colours, sizes 0.13-0.32 of the image width, any rotation.
    count = 1 + (uniform(keys, 3, 1)[:, 0] * K).long().clamp(max=K - 1)                # (N,)
    count = torch.ones_like(count) if single else count
    o = uniform(keys, 4, 10, K)                                                        # (N, 10, K)
    hue = o[:, 5]
    # (offset, span) of the centre and the radius: the single variant draws one big, central, flat object
    (c0, cs), (r0, rs) = ((0.42, 0.16), (0.30, 0.12)) if single else ((0.15, 0.7), (0.13, 0.19))
    fill = torch.bucketize(o[:, 9].contiguous(), torch.tensor(_FILL_CUMPROB), right=True)     # (N, K)
    return dict(
        corners=corners,
        active=torch.arange(K)[None, :] < count[:, None],
        cls=(o[:, 0] * len(SHAPES_CLASSES)).long().clamp(max=len(SHAPES_CLASSES) - 1),
        cx=c0 + cs * o[:, 1], cy=c0 + cs * o[:, 2],
        radius=r0 + rs * o[:, 3],
        angle=2 * math.pi * o[:, 4],
        color_a=hsv_to_rgb(hue, 0.55 + 0.45 * o[:, 6], 0.5 + 0.5 * o[:, 7]),
        color_b=hsv_to_rgb((hue + 0.4 + 0.2 * o[:, 8]) % 1.0, 0.3 + 0.7 * o[:, 6], 1.0 - 0.6 * o[:, 7]),
        fill=torch.zeros_like(fill) if single else fill,
        period=0.12 + 0.08 * uniform(keys, 5, K),
        noise_key=_hash32(keys[:, None] ^ torch.arange(1, K + 1)),
    )


def render(scene: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise scenes (see :func:`sample_scenes`) at ``size`` px -> (images (N, 3, S, S) uint8, labels (N,)).

    The label is the dominant class: the class with the largest visible area once later objects occlude
    earlier ones.
    """
    N, K = scene["active"].shape
    S = size
    background = _lerp2d(scene["corners"], S)                                          # (N, 3, S, S)

    # Per active object m: coordinates rotated by its angle around its centre, in object units -> (M, S, S)
    n_idx, k_idx = scene["active"].nonzero(as_tuple=True)
    obj = {name: scene[name][n_idx, k_idx] for name in ("cls", "cx", "cy", "radius", "angle", "fill", "period")}
    grid = (torch.arange(S, dtype=torch.float32) + 0.5) / S                          # pixel centres in [0, 1]
    r = obj["radius"][:, None, None]
    dx = (grid[None, None, :] - obj["cx"][:, None, None]) / r                        # (M, 1, S)
    dy = (grid[None, :, None] - obj["cy"][:, None, None]) / r                        # (M, S, 1)
    cos, sin = torch.cos(obj["angle"])[:, None, None], torch.sin(obj["angle"])[:, None, None]
    # [u, v] = R(-angle) [dx, dy]
    uu, vv = dx * cos + dy * sin, dy * cos - dx * sin
    inside = torch.zeros(N, K, S, S, dtype=torch.bool)
    inside[n_idx, k_idx] = _shape_masks(obj["cls"], uu, vv)
    # Texture weight t (0 for flat fills), computed only for the textured objects.
    t = torch.zeros(N, K, S, S)
    tex = (obj["fill"] > 0).nonzero().squeeze(1)
    if len(tex):
        n_t, k_t = n_idx[tex], k_idx[tex]
        t[n_t, k_t] = _textures(scene["noise_key"][n_t, k_t], obj["fill"][tex], uu[tex] * r[tex],
                                vv[tex] * r[tex], obj["period"][tex], S)

    # Occlusion: owner = the last (front-most) slot covering each pixel, -1 where only background shows.
    owner = torch.full((N, S, S), -1, dtype=torch.long)
    for k in range(K):
        owner = torch.where(inside[:, k], k, owner)
    shown = owner >= 0
    slot = torch.arange(N)[:, None, None] * K + owner.clamp(min=0)                  # (N, S, S) into N*K
    # One row lookup per pixel in a table of both colours (N*K, 6) -> (N, S, S, 6); embedding is the fast gather.
    table = torch.cat([scene["color_a"], scene["color_b"]], dim=-1).reshape(N * K, 6)
    a, b = F.embedding(slot, table).split(3, dim=-1)
    t_shown = t.gather(1, owner.clamp(min=0)[:, None])[:, 0]                         # (N, S, S)
    paint = rearrange(a + (b - a) * t_shown[..., None], "n h w c -> n c h w")
    canvas = torch.where(shown[:, None], paint, background)

    # Dominant class: visible pixels per slot -> summed per class (N, C) -> argmax.
    visible = torch.bincount(slot[shown], minlength=N * K).reshape(N, K)
    area = torch.zeros(N, len(SHAPES_CLASSES), dtype=torch.long).scatter_add_(1, scene["cls"], visible)
    labels = area.argmax(dim=1)
    images = canvas.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8)          # round to nearest
    return images, labels


class ShapesDataset(Dataset):
    """The ``shapes`` dataset: items are (3, S, S) float in [-1, 1], or (image, label) with ``labels=True``.

    ``single=True`` is the labelled variant (``data.load("shapes-single")``): one large flat object per image,
    so its label is a strong signal (for class-conditional generation); the default scenes hold 1-4
    smaller objects and are labelled by the dominant one.

    Attributes: ``images`` (N, 3, S, S) uint8, ``labels`` (N,) int64 (the dominant class), ``classes``.
    """

    classes = SHAPES_CLASSES

    def __init__(self, n: int = 10_000, image_size: int = 32, split: str = "train", seed: int = 0,
                 labels: bool = False, single: bool = False):
        if image_size < 8:
            raise ValueError(f"shapes needs image_size >= 8 pixels, got {image_size}")
        if n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}")
        self.split, self.seed, self.image_size, self.return_labels = split, seed, image_size, labels
        self.single = single
        keys = image_keys(seed, split, torch.arange(n))
        # Chunks of ~2**19 pixels keep the working set in cache and bound peak memory (K * chunk * S * S
        # floats); each image depends only on its own key, so the chunking never changes the result.
        chunk = max(8, min(256, 2**19 // image_size**2))
        parts = [render(sample_scenes(keys[i:i + chunk], single), image_size) for i in range(0, n, chunk)]
        self.images = torch.cat([p[0] for p in parts])
        self.labels = torch.cat([p[1] for p in parts])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i].float() / 127.5 - 1.0                                       # uint8 -> [-1, 1]
        return (x, int(self.labels[i])) if self.return_labels else x

    def __repr__(self) -> str:
        return (f"ShapesDataset(n={len(self)}, image_size={self.image_size}, split={self.split!r}, "
                f"seed={self.seed}, labels={self.return_labels}{', single=True' if self.single else ''})")
