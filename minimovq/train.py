"""One small, readable training loop for every lesson. It is not a framework.

You write a ``step_fn(batch, step) -> dict`` that computes the losses; the :class:`Trainer` does the rest:

* cycles the loader for a fixed number of steps, with a notebook-aware tqdm bar;
* for every returned key named like an optimizer (in the dict's order): zero that optimizer's grads,
  backward, unscale, clip, step — so a GAN's generator loss may backprop through the discriminator, and the
  discriminator's grads are cleared right before its own backward;
* AMP on CUDA (bf16 where the GPU has it, fp16 + GradScaler otherwise, as on a T4);
* a :class:`History` of every logged scalar, and optional periodic sample grids;
* atomic checkpoints every ``ckpt_every`` steps, and resume from the last one after a disconnect. A resume
  whose optimizer hyperparameters (lr, betas, weight_decay, ...) differ from the checkpoint's raises, since
  restoring the optimizer would silently bring the old values back; ``override_hparams=True`` resumes with
  the new ones (with a warning), and ``run_checkpoint(name, config={...})`` gives each setting its own file.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from .checkpoint import (CheckpointError, describe_hparam_changes, first_line, hparam_changes, load_checkpoint,
                         save_checkpoint)
from .profiles import amp_dtype
from .viz import moving_average, plot_history  # moving_average re-exported

try:  # tqdm.auto picks the widget bar in notebooks and the text bar elsewhere
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    from tqdm import tqdm


class History(dict):
    """``{name: [value per step]}`` plus ``samples`` (a list of ``(step, images)``) and ``seconds``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples: list[tuple[int, torch.Tensor]] = []
        self.seconds: float = 0.0

    def last(self, key: str, n: int = 50) -> float:
        """Mean of the last ``n`` values of ``key``."""
        vals = self[key][-n:]
        return sum(vals) / max(len(vals), 1)

    def plot(self, keys: Iterable[str] | None = None, smooth: int = 0, ax=None, logy: bool = False, title=None):
        """Plot the curves of ``keys`` (all by default); ``smooth`` is a moving-average window."""
        return plot_history(self, keys=keys, smooth=smooth, ax=ax, logy=logy, title=title)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _infinite(loader: Iterable) -> Iterable:
    """Cycle the loader without rebuilding an iterator every step."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the data loader yielded no batches: the dataset is empty or smaller than "
                             "batch_size with drop_last=True")


class Trainer:
    """Fit ``model`` with one or more optimizers.

    Args:
        model: the module (or a ``ModuleDict`` of several) whose state is checkpointed.
        optimizers: ``{"name": optimizer}``; ``step_fn`` returns a loss under each name.
        device: where batches go. ``amp``: mixed precision (ignored off CUDA).
        grad_clip: clip the total gradient norm of each optimizer's parameters (``None``: off).
        ckpt_path: a file; when given, the trainer resumes from it and saves to it atomically.
        ckpt_every: checkpoint period in steps (plus once at the end).
        schedulers: optional ``{"name": lr_scheduler}``, stepped after the optimizer of the same name.
        override_hparams: resume from a checkpoint whose optimizer hyperparameters differ from these
            optimizers' (keeping its weights, moments and step, with the new lr, betas, ...). Without it such a
            resume raises :class:`CheckpointError`.
    """

    def __init__(self, model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], *,
                 device: str | torch.device = "cpu", amp: bool = False, grad_clip: float | None = 1.0,
                 ckpt_path: str | Path | None = None, ckpt_every: int = 500,
                 schedulers: Mapping[str, Any] | None = None, override_hparams: bool = False):
        if not optimizers:
            raise ValueError("give at least one optimizer, e.g. {'loss': torch.optim.Adam(model.parameters())}")
        self.model = model
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers or {})
        self.device = torch.device(device)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.dtype = amp_dtype(self.device) if self.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)
        self.grad_clip = grad_clip
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.ckpt_every = ckpt_every
        self.override_hparams = override_hparams
        self.step = 0
        self.history = History()
        if self.ckpt_path and self.ckpt_path.exists():
            self.load(self.ckpt_path)

    def autocast(self):
        """Context manager for the forward pass: autocast on CUDA with AMP, a no-op otherwise."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    # --- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "history": {k: list(v) for k, v in self.history.items()},
            "seconds": self.history.seconds,
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically (temp file, then rename)."""
        path = Path(path or self.ckpt_path)
        return save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Resume model, optimizers, scaler, step and history from ``path`` (``weights_only=True``).

        Raises :class:`CheckpointError` when the optimizer hyperparameters differ from the checkpoint's,
        unless the trainer was built with ``override_hparams=True``."""
        state = load_checkpoint(path, map_location=self.device)
        saved = state.get("optimizers", {})
        changes = {k: hparam_changes(saved[k], o) for k, o in self.optimizers.items() if k in saved}
        changes = {k: c for k, c in changes.items() if c}
        if changes and not self.override_hparams:
            raise CheckpointError(
                f"checkpoint {path} (step {state.get('step')}) was trained with other optimizer hyperparameters "
                f"than this run's: {describe_hparam_changes(changes)}. Resuming would silently restore the old values. Give this "
                "run its own checkpoint (run_checkpoint(name, config={'lr': LR, ...})), delete the checkpoint to "
                "start over, or pass Trainer(..., override_hparams=True) to resume with the new values.")
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(
                f"checkpoint {path} was saved from a different model ({first_line(e, 160)}). "
                "Delete it (or give this run another checkpoint name) to start fresh.") from e
        for k, o in self.optimizers.items():
            if k in saved:
                new_groups = [{h: v for h, v in g.items() if h != "params"} for g in o.param_groups]
                try:
                    o.load_state_dict(saved[k])
                except (ValueError, KeyError, RuntimeError) as e:
                    raise CheckpointError(
                        f"checkpoint {path} holds a different '{k}' optimizer ({first_line(e, 160)}). Delete it "
                        "(or give this run another checkpoint name) to start fresh.") from e
                if k in changes:  # override_hparams: put the new values back over the restored ones
                    for g, new_g in zip(o.param_groups, new_groups, strict=True):
                        g.update(new_g)
        for k, s in self.schedulers.items():
            if k in state.get("schedulers", {}):
                s.load_state_dict(state["schedulers"][k])
                if k in changes and hasattr(s, "base_lrs"):  # the schedule restarts from the new base lr
                    s.base_lrs = [g.get("initial_lr", g["lr"]) for g in self.optimizers[k].param_groups]
        if changes:
            warnings.warn(f"resuming {path} with NEW optimizer hyperparameters (override_hparams=True): "
                          f"{describe_hparam_changes(changes)}", stacklevel=3)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.history = History({k: list(v) for k, v in state.get("history", {}).items()})
        self.history.seconds = float(state.get("seconds", 0.0))
        print(f"resumed from {path} at step {self.step}")

    # --- the loop ----------------------------------------------------------------------------------------
    def _optimize(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the '{name}' loss is {loss.item()} at step {self.step}: lower the learning rate, keep "
                "grad_clip on, or (with fp16) check that the quantizer and losses run in fp32")
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(opt)
        if name in self.schedulers:
            self.schedulers[name].step()

    def fit(self, loader: Iterable, step_fn: Callable[[Any, int], Mapping[str, Any]], steps: int, *,
            desc: str = "train", sample_fn: Callable[[int], torch.Tensor] | None = None,
            sample_every: int | None = None, log_every: int = 10, progress: bool = True) -> History:
        """Run until ``self.step == steps`` (a resumed run continues where it stopped); return the history."""
        self.model.train()
        data = _infinite(loader)
        start = time.perf_counter()
        logged: dict[str, float] = {}
        bar = tqdm(total=steps, initial=min(self.step, steps), desc=desc, disable=not progress,
                   dynamic_ncols=True, mininterval=0.5)
        try:
            while self.step < steps:
                batch = _to_device(next(data), self.device)
                out = step_fn(batch, self.step)
                for name in out:
                    if name in self.optimizers:
                        self._optimize(name, out[name])
                self.scaler.update()
                for k, v in out.items():
                    v = v.detach().float().item() if isinstance(v, torch.Tensor) else float(v)
                    self.history.setdefault(k, []).append(v)
                    logged[k] = v
                self.step += 1
                bar.update(1)
                if self.step % log_every == 0 or self.step == steps:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(logged.items())[:4]}, refresh=False)
                if sample_fn is not None and sample_every and (self.step % sample_every == 0 or self.step == steps):
                    self.model.eval()
                    with torch.no_grad():
                        self.history.samples.append((self.step, sample_fn(self.step).detach().cpu()))
                    self.model.train()
                if self.ckpt_path and (self.step % self.ckpt_every == 0 or self.step == steps):
                    self.history.seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save()
        finally:
            bar.close()
            self.history.seconds += time.perf_counter() - start
            self.model.eval()
        return self.history


def fit_simple(model: nn.Module, loader: Iterable, loss_fn: Callable[[Any], torch.Tensor], steps: int, *,
               lr: float = 1e-3, device: str | torch.device = "cpu", amp: bool = False, desc: str = "train",
               ckpt_path: str | Path | None = None) -> History:
    """The common case in one call: Adam on ``model``, ``loss_fn(batch) -> scalar`` (or a dict with a
    ``"loss"`` entry plus logged scalars)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    trainer = Trainer(model, {"loss": opt}, device=device, amp=amp, ckpt_path=ckpt_path)

    def step_fn(batch, step):
        with trainer.autocast():
            out = loss_fn(batch)
        return out if isinstance(out, Mapping) else {"loss": out}

    return trainer.fit(loader, step_fn, steps, desc=desc)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["Trainer", "History", "fit_simple", "moving_average", "count_parameters"]
