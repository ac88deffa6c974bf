"""Lesson 4's checks reject known-wrong implementations (reference and stub behaviour: test_checks_all.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from minimovq import movq
from minimovq.checks import movq as checks


# ---------------------------------------------------------------- SpatialNorm
class _Base(nn.Module):
    def __init__(self, f_channels, zq_channels, affine=True, eps=1e-6):
        super().__init__()
        self.norm_layer = nn.GroupNorm(32, f_channels, eps=eps, affine=affine)
        self.conv_y = nn.Conv2d(zq_channels, f_channels, 1)
        self.conv_b = nn.Conv2d(zq_channels, f_channels, 1)

    def up(self, zq, f):
        return F.interpolate(zq, size=f.shape[-2:], mode="nearest")

    def forward(self, f, zq):
        zq = self.up(zq, f)
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


class Bilinear(_Base):
    def up(self, zq, f):
        return F.interpolate(zq, size=f.shape[-2:], mode="bilinear", align_corners=False)


class ScaleFactor(_Base):  # one scale factor from the widths: wrong on non-square grids
    def up(self, zq, f):
        return F.interpolate(zq, scale_factor=f.shape[-1] / zq.shape[-1], mode="nearest")


class NoAffine(_Base):
    def __init__(self, f_channels, zq_channels):
        super().__init__(f_channels, zq_channels, affine=False)


class DefaultEps(_Base):
    def __init__(self, f_channels, zq_channels):
        super().__init__(f_channels, zq_channels, eps=1e-5)


class SwappedConvs(_Base):
    def forward(self, f, zq):
        zq = self.up(zq, f)
        return self.norm_layer(f) * self.conv_b(zq) + self.conv_y(zq)


class NoNorm(_Base):
    def forward(self, f, zq):
        zq = self.up(zq, f)
        return f * self.conv_y(zq) + self.conv_b(zq)


class DetachedZq(_Base):
    def forward(self, f, zq):
        return super().forward(f, zq.detach())


class InPlaceResidual(_Base):  # adds the shift into the caller's feature map
    def forward(self, f, zq):
        zq = self.up(zq, f)
        return f.mul_(0).add_(self.norm_layer(f.clone()) * self.conv_y(zq) + self.conv_b(zq))


class BatchNormed(_Base):  # normalises over the batch instead of per sample (GroupNorm)
    def forward(self, f, zq):
        zq = self.up(zq, f)
        mean, std = f.mean((0, 2, 3), keepdim=True), f.std((0, 2, 3), keepdim=True)
        return ((f - mean) / (std + 1e-6)) * self.conv_y(zq) + self.conv_b(zq)


class WrongNames(nn.Module):
    def __init__(self, f_channels, zq_channels):
        super().__init__()
        self.norm_layer = nn.GroupNorm(32, f_channels, eps=1e-6)
        self.conv_y = nn.Conv2d(zq_channels, f_channels, 1)
        self.conv_beta = nn.Conv2d(zq_channels, f_channels, 1)

    def forward(self, f, zq):
        zq = F.interpolate(zq, size=f.shape[-2:], mode="nearest")
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_beta(zq)


class Stub(nn.Module):
    def __init__(self, f_channels, zq_channels):
        super().__init__()
        raise NotImplementedError("Exercise 4.1: SpatialNorm")


@pytest.mark.parametrize("wrong", [Bilinear, ScaleFactor, NoAffine, DefaultEps, SwappedConvs, NoNorm,
                                   DetachedZq, WrongNames, Stub, InPlaceResidual, BatchNormed])
def test_spatial_norm_rejects_wrong_versions(wrong):
    with pytest.raises(AssertionError):
        checks.SpatialNorm(wrong, strict=True)


def test_spatial_norm_falls_back_to_reference(capsys):
    assert checks.SpatialNorm(Bilinear).__wrapped__ is movq.SpatialNorm
    assert "✗" in capsys.readouterr().out
    assert checks.SpatialNorm(_Base) is _Base  # a correct learner's version is returned


# ---------------------------------------------------------------- group_quantize
def _nearest(flat, codebook):
    return torch.cdist(flat, codebook).argmin(1)


def correct_einops(z, codebook, groups):
    B, D, H, W = z.shape
    flat = rearrange(z, "b (g d) h w -> (b h w g) d", g=groups)
    idx = _nearest(flat, codebook)
    z_q = rearrange(codebook[idx], "(b h w g) d -> b (g d) h w", b=B, h=H, w=W)
    return z + (z_q - z).detach(), rearrange(idx, "(b h w g) -> b h w g", b=B, h=H, w=W)


def interleaved(z, codebook, groups):
    B, D, H, W = z.shape
    flat = rearrange(z, "b (d g) h w -> (b h w g) d", g=groups)
    idx = _nearest(flat, codebook)
    z_q = rearrange(codebook[idx], "(b h w g) d -> b (d g) h w", b=B, h=H, w=W)
    return z + (z_q - z).detach(), rearrange(idx, "(b h w g) -> b h w g", b=B, h=H, w=W)


def no_straight_through(z, codebook, groups):
    z_q, idx = correct_einops(z, codebook, groups)
    return z_q.detach(), idx


def codebook_gets_gradient(z, codebook, groups):
    z_q, idx = correct_einops(z, codebook, groups)
    B, D, H, W = z.shape
    e = rearrange(codebook[idx.flatten()], "(b h w g) d -> b (g d) h w", b=B, h=H, w=W)
    return e + (z - z.detach()), idx


def groups_first_indices(z, codebook, groups):
    z_q, idx = correct_einops(z, codebook, groups)
    return z_q, rearrange(idx, "b h w g -> b g h w")


def flat_indices(z, codebook, groups):
    z_q, idx = correct_einops(z, codebook, groups)
    return z_q, idx.flatten()


def drops_group_axis_for_one_group(z, codebook, groups):
    z_q, idx = correct_einops(z, codebook, groups)
    return z_q, idx.squeeze(-1) if groups == 1 else idx


def farthest_code(z, codebook, groups):
    B, D, H, W = z.shape
    flat = rearrange(z, "b (g d) h w -> (b h w g) d", g=groups)
    idx = torch.cdist(flat, codebook).argmax(1)
    z_q = rearrange(codebook[idx], "(b h w g) d -> b (g d) h w", b=B, h=H, w=W)
    return z + (z_q - z).detach(), rearrange(idx, "(b h w g) -> b h w g", b=B, h=H, w=W)


def in_place_write(z, codebook, groups):  # writes z_q into the caller's z
    z_q, idx = correct_einops(z, codebook, groups)
    z.data.copy_(z_q.detach())
    return z_q, idx


def leaks_backwards(z, codebook, groups):  # straight-through written backwards: the codebook gets the gradient
    B, D, H, W = z.shape
    flat = rearrange(z, "b (g d) h w -> (b h w g) d", g=groups)
    idx = torch.cdist(flat, codebook).argmin(1)
    e = rearrange(codebook[idx], "(b h w g) d -> b (g d) h w", b=B, h=H, w=W)
    return e + (z - z.detach()), rearrange(idx, "(b h w g) -> b h w g", b=B, h=H, w=W)


def stub(z, codebook, groups):
    raise NotImplementedError("Exercise 4.2: group_quantize")


def test_group_quantize_accepts_an_independent_correct_version():
    assert checks.group_quantize(correct_einops, strict=True) is correct_einops


@pytest.mark.parametrize("wrong", [interleaved, no_straight_through, codebook_gets_gradient, groups_first_indices,
                                   flat_indices, drops_group_axis_for_one_group, farthest_code, stub,
                                   in_place_write, leaks_backwards])
def test_group_quantize_rejects_wrong_versions(wrong):
    with pytest.raises(AssertionError):
        checks.group_quantize(wrong, strict=True)


def test_references_are_the_package_functions():
    assert checks.SpatialNorm.reference is movq.SpatialNorm
    assert checks.group_quantize.reference is movq.group_quantize
