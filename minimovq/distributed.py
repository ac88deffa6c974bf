"""The few collective operations the package needs, as no-ops in a single process.

Under ``torchrun`` (``torch.distributed`` initialised, world size > 1) each rank holds a slice of the global batch.
Everything computed from the batch outside autograd — EMA codebook statistics, dead-code restarts, k-means init —
must see the *global* batch, or N processes drift apart from one. These helpers make that one line each.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_size", "rank", "all_reduce_sum", "all_gather_rows"]


def is_distributed() -> bool:
    """True under an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``t`` (a new tensor; ``t`` itself is unchanged). The identity in one process."""
    if not is_distributed():
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (N_r, ...) along dim 0, in rank order. Ranks may hold different N_r.

    With each rank holding a contiguous slice of the global batch, rank order is the global batch order, so the
    result equals what a single process computes on the whole batch."""
    if not is_distributed():
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[:t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)
