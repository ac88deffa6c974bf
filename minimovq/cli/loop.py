"""What every training command shares: processes, the global batch order, AMP, logs, checkpoints and RNG state.

World-size invariance rests on three rules, kept here:

1. **One global batch order.** Step i's global batch is a fixed slice of a seeded permutation of the dataset
   (a new permutation each epoch). With ``accum`` micro-batches, micro-batch a is a fixed slice of that, and rank
   r takes the r-th of W equal parts of it. The order depends on the seed and the step only — never on W — so
   the data position *is* the step, and a resumed run reads exactly the batches it would have read.
2. **One global RNG stream.** Every rank seeds torch's global RNG identically and nothing rank-specific draws
   from it (data order and loader seeds have their own generators), so dead-code restarts pick the same codes
   on every rank. The RNG states go into every checkpoint.
3. **Global statistics.** Losses are means over equal slices (averaging the ranks' gradients gives the global
   batch's gradient); EMA codebooks, BatchNorm and the adaptive GAN weight reduce over ranks.
"""
from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import distributed as dist
from ..checkpoint import load_checkpoint, save_checkpoint
from ..profiles import amp_dtype

__all__ = ["Runtime", "start", "GlobalBatchSampler", "batches", "rng_state", "set_rng_state", "MetricsLog",
           "global_means", "resume_state", "save_state", "UsageError"]


class UsageError(ValueError):
    """A bad command-line option, found before any work starts (printed as ``error: ...``, exit status 2)."""


@dataclass
class Runtime:
    """This process's place in the run: device, rank, world size and mixed precision."""

    device: torch.device
    rank: int
    world: int
    amp: torch.dtype | None          # autocast dtype, None when off
    scaler: torch.amp.GradScaler     # enabled for fp16 only
    channels_last: bool

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """Autocast for the forward pass (a no-op when AMP is off)."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x


def start(device: str = "auto", amp: str = "auto", channels_last: bool | None = None, seed: int = 0) -> Runtime:
    """Join torchrun's process group (if launched by it), pick AMP, and seed every RNG identically on all ranks.

    ``amp``: "auto" (bf16 on GPUs that have it, fp16 + GradScaler on older ones such as the T4, off on CPU),
    "bf16", "fp16" or "off". ``channels_last``: None = on for CUDA."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise UsageError(f"unknown --amp {amp!r}; choose auto, bf16, fp16 or off")
    dev = dist.setup(device)
    if amp == "auto":
        dtype = amp_dtype(dev) if dev.type == "cuda" else None
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    if dtype == torch.float16 and dev.type != "cuda":
        raise UsageError("--amp fp16 needs a GPU (its GradScaler is CUDA-only); use --amp bf16 or off on CPU")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    seed_all(seed)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    cl = dev.type == "cuda" if channels_last is None else channels_last
    return Runtime(dev, dist.rank(), dist.world_size(), dtype, scaler, cl)


def seed_all(seed: int) -> None:
    """The same seed on every rank: Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_batch(batch_size: int, world: int, accum: int, dataset_size: int) -> int:
    """The per-rank micro-batch, or a :class:`UsageError` when the global batch does not split evenly."""
    if batch_size < 1 or accum < 1:
        raise UsageError(f"--batch-size and --accum must be >= 1, got {batch_size} and {accum}")
    if batch_size % (world * accum):
        ok = [b for b in range(world * accum, 4 * world * accum + 1, world * accum)]
        raise UsageError(f"--batch-size {batch_size} (global) does not split into {world} process(es) x "
                         f"{accum} micro-batch(es); use a multiple of {world * accum}, e.g. {ok[:4]}")
    if dataset_size < batch_size:
        raise UsageError(f"the dataset has {dataset_size} images, fewer than --batch-size {batch_size}; use a "
                         "smaller batch or more images (--num-images)")
    return batch_size // (world * accum)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's index lists, ``accum`` per step, for steps ``start .. steps-1``.

    Global batch i = permutation_e[j·B : (j+1)·B] with (e, j) = divmod(i, N // B) and permutation_e a
    ``randperm(N)`` seeded by (seed, e). Micro-batch a is its a-th of ``accum`` parts; rank r takes the r-th of
    ``world`` parts of that. Concatenated in rank order, the ranks' slices are the global batch."""

    def __init__(self, n: int, batch_size: int, steps: int, start: int = 0, seed: int = 0, rank: int = 0,
                 world: int = 1, accum: int = 1):
        self.n, self.B, self.steps, self.start, self.seed = n, batch_size, steps, start, seed
        self.rank, self.world, self.accum = rank, world, accum
        self.per_epoch = n // batch_size
        self._perm: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=gen))
        return self._perm[1]

    def global_batch(self, step: int) -> torch.Tensor:
        epoch, j = divmod(step, self.per_epoch)
        return self.permutation(epoch)[j * self.B:(j + 1) * self.B]

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.B // self.accum
        part = micro // self.world
        for step in range(self.start, self.steps):
            batch = self.global_batch(step)
            for a in range(self.accum):
                lo = a * micro + self.rank * part
                yield batch[lo:lo + part].tolist()

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.accum


def batches(dataset: Dataset, rt: Runtime, batch_size: int, steps: int, start: int, seed: int, accum: int = 1,
            workers: int = 0) -> DataLoader:
    """A DataLoader over this rank's slices of global batches ``start .. steps-1`` (``accum`` per step)."""
    sampler = GlobalBatchSampler(len(dataset), batch_size, steps, start, seed, rt.rank, rt.world, accum)
    # the loader's own generator: building its iterator must not draw from the global RNG (rule 2)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=rt.device.type == "cuda",
                      persistent_workers=False, generator=torch.Generator().manual_seed(seed))


def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain lists (loadable with weights_only=True)."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]], "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved (on every rank: the streams are identical across ranks)."""
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def resume_state(out: Path, args: dict[str, Any], must_match: tuple[str, ...]) -> dict[str, Any] | None:
    """The checkpoint ``out/last.pt`` when it exists (else None), after checking that it was written by a run
    with the same ``must_match`` options — resuming it with others would silently train a different model."""
    path = out / "last.pt"
    if not path.exists():
        return None
    state = load_checkpoint(path)
    old = state.get("args", {})
    diff = [f"--{k.replace('_', '-')} {old.get(k)!r} (now {args.get(k)!r})" for k in must_match
            if k in old and old.get(k) != args.get(k)]
    if diff:
        raise UsageError(f"{path} holds a run with other options: {', '.join(diff)}. Repeat that run's options "
                         "to resume it, or pass another --out to start a new run")
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Rank 0 writes ``state`` atomically (temp file + rename); other ranks do nothing."""
    if dist.is_main():
        save_checkpoint(state, path)


def global_means(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
    """Means over ranks of scalar logs (a collective: every rank must call it at the same step)."""
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    t = dist.all_reduce_sum(t) / dist.world_size()
    return dict(zip(keys, t.tolist(), strict=True))


class MetricsLog:
    """``DIR/metrics.jsonl``, one JSON object per logged step, written by rank 0 only. On resume from step s,
    lines of steps after s (written before the kill, after the checkpoint) are dropped, so the file reads as if
    the run had never been interrupted."""

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = path
        if not dist.is_main():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step and path.exists():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except json.JSONDecodeError:  # a line cut by the kill
                    pass
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if dist.is_main():
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
