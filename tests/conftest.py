"""Fixtures every test file shares: seeded images in [-1, 1], and the one overfit-one-batch loop."""
from __future__ import annotations

from typing import Callable, Iterable

import pytest
import torch


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    """Seeded uniform images in [-1, 1] of ``shape`` (B, C, H, W)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _overfit(loss_fn: Callable[[], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
             params: Iterable[torch.nn.Parameter] | None = None, *, steps: int = 60, lr: float = 1e-3,
             optimizer: torch.optim.Optimizer | None = None, scheduler=None) -> list[float]:
    """Train on one fixed batch and return the tracked value at every step.

    ``loss_fn()`` returns the loss to minimise, or ``(loss, tracked)`` to follow another value (e.g. the
    reconstruction term alone). Adam on ``params`` (those that require grad) unless ``optimizer`` is given."""
    if optimizer is None:
        optimizer = torch.optim.Adam([p for p in params if p.requires_grad], lr=lr)
    tracked = []
    for _ in range(steps):
        out = loss_fn()
        loss, value = out if isinstance(out, tuple) else (out, out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        tracked.append(float(value.detach()))
    return tracked


@pytest.fixture
def images():
    """``images(B, C, H, W, seed=0)``: seeded images in [-1, 1]."""
    return _images


@pytest.fixture
def overfit():
    """``overfit(loss_fn, params, steps=60, lr=1e-3)``: the overfit-one-batch loop, written once."""
    return _overfit
