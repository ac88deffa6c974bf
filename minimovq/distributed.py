"""The few collective operations the package needs, as no-ops in a single process.

Under ``torchrun`` (``torch.distributed`` initialised, world size > 1) each rank holds a slice of the global batch.
Everything computed from the batch outside autograd — EMA codebook statistics, dead-code restarts, k-means init —
must see the *global* batch, or N processes drift apart from one. These helpers make that one line each.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["is_distributed", "world_size", "rank", "all_reduce_sum", "all_gather_rows",
           "launched_by_torchrun", "setup", "cleanup", "local_rank", "is_main", "average_gradients",
           "GlobalBatchNorm2d", "sync_batchnorm"]


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
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)], dim=0)


# ------------------------------------------------------------------ process group (``python -m minimovq ...``)
def launched_by_torchrun() -> bool:
    """True when torchrun (or a SLURM wrapper exporting the same variables) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def local_rank() -> int:
    """This process's index on its node (picks its GPU); 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints and logs and shows the progress bar."""
    return rank() == 0


def setup(device: str = "auto", timeout_s: float = 1800.0) -> torch.device:
    """Join torchrun's process group (NCCL on GPU, gloo on CPU) and return this process's device.

    ``device``: "auto" (a GPU when there is one), "cuda" or "cpu". Outside torchrun nothing is initialised and
    the program runs as one process. Call :func:`cleanup` at the end."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no GPU; use --device cpu (or auto)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", local_rank()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if launched_by_torchrun() and not dist.is_initialized():
        kwargs = dict(backend="nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        try:  # device_id (torch >= 2.3) binds NCCL to this GPU at once
            dist.init_process_group(**kwargs, **({"device_id": dev} if use_cuda else {}))
        except TypeError:
            dist.init_process_group(**kwargs)
    return dev


def cleanup() -> None:
    """Leave the process group (a no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params) -> None:
    """Replace every ``p.grad`` by its mean over ranks (what DDP does, for modules not wrapped in DDP).

    Each rank's loss is a mean over its equal slice of the global batch, so the mean over ranks of the local
    gradients is the gradient of the global batch's loss."""
    if not is_distributed():
        return
    n = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(n)


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_r x_r on every rank; the gradient of x_r is Σ_r ∂L_r/∂y (every rank's loss depends on y)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(grad.contiguous())


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the *global* batch, on any device and backend.

    torch's ``SyncBatchNorm`` only runs on GPUs; this one runs under gloo too. With x_r the slice of rank r:
    μ = Σ_r Σ x_r / n, σ² = Σ_r Σ x_r² / n − μ², y = γ (x − μ) / √(σ² + ε) + β, where the sums go through a
    differentiable all-reduce so that the gradient is the global batch's. Same state-dict keys as BatchNorm2d;
    in one process, or in eval mode, it *is* BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        C = x.shape[1]
        xf = x.float()
        count = torch.full((1,), x.numel() / C, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), xf.pow(2).sum((0, 2, 3)), count]))  # (2C + 1,)
        n = stats[-1]
        mean = stats[:C] / n                      # μ (C,)
        var = stats[C:2 * C] / n - mean.pow(2)    # σ² (C,), biased as in the forward of BatchNorm
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), n)
        # y = γ (x − μ) / √(σ² + ε) + β
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """running ← (1 − m)·running + m·batch, with the unbiased variance, as BatchNorm2d does."""
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        self.num_batches_tracked += 1


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every BatchNorm2d inside ``module`` into a :class:`GlobalBatchNorm2d` (in place; same weights)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats, device=child.weight.device, dtype=child.weight.dtype)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            sync_batchnorm(child)
    return module
