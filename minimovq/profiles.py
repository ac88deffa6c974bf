"""Three budgets for one course: ``quick`` (CI smoke test), ``cpu`` (a laptop) and ``gpu`` (a Colab T4).

The profile comes from the environment variable ``MINIMOVQ_PROFILE``; by default it follows the hardware
(``gpu`` when CUDA is available, else ``cpu``). Every notebook's config cell derives its sizes from it::

    P = get_profile()
    steps = P.pick(quick=30, cpu=1500, gpu=6000)
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")
PROFILES = ("quick", "cpu", "gpu")


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def in_ci() -> bool:
    """True on a continuous-integration runner (the ``CI`` variable is set)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


@dataclass(frozen=True)
class Profile:
    """A compute budget. Use :meth:`pick` to choose per-profile values."""

    name: str            # "quick" | "cpu" | "gpu"
    device: torch.device  # where models and batches live
    amp: bool            # mixed precision on (CUDA only)
    num_workers: int     # DataLoader workers

    @property
    def is_quick(self) -> bool:
        return self.name == "quick"

    def pick(self, *, quick: T, cpu: T, gpu: T) -> T:
        """Return the value for this profile, e.g. ``P.pick(quick=20, cpu=1000, gpu=5000)``."""
        return {"quick": quick, "cpu": cpu, "gpu": gpu}[self.name]

    def describe(self) -> str:
        gpu = ""
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info()
            gpu = f", {torch.cuda.get_device_name()} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
        return (f"profile={self.name} device={self.device}{gpu} amp={self.amp} "
                f"torch={torch.__version__}")


def default_profile_name() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None, device: str | torch.device | None = None) -> Profile:
    """The active profile: ``name``, else ``$MINIMOVQ_PROFILE``, else ``gpu`` with CUDA and ``cpu`` without."""
    name = (name or os.environ.get("MINIMOVQ_PROFILE") or default_profile_name()).strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: MINIMOVQ_PROFILE must be one of {', '.join(PROFILES)}")
    if device is None:
        device = "cuda" if (name == "gpu" and torch.cuda.is_available()) else "cpu"
    device = torch.device(device)
    workers = 2 if (in_colab() and not in_ci()) else 0
    return Profile(name=name, device=device, amp=device.type == "cuda", num_workers=workers)


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU has real bf16 (Ampere and newer), else fp16 (e.g. the T4), which needs a GradScaler."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for repeatable runs."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def settings(**overrides: Any) -> dict:
    """Small helper for notebooks: a dict of values, printed as a table."""
    for k, v in overrides.items():
        print(f"  {k:<18} {v}")
    return dict(overrides)
