"""Checkpoints that never lose a learner's work.

* :func:`save_checkpoint` writes to a temporary file in the same folder, then renames it over the target
  (``os.replace`` is atomic), so a crash or a disconnect mid-write leaves the previous checkpoint intact.
* :func:`load_checkpoint` always uses ``torch.load(..., weights_only=True)``, and turns a corrupt or truncated
  file into a clear :class:`CheckpointError`.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated or of the wrong kind."""


def checkpoint_dir() -> Path:
    """Where checkpoints live: ``$MINIMOVQ_CKPT_DIR``, else ``/content/drive/MyDrive/minimovq`` when Google
    Drive is mounted on Colab, else ``checkpoints/`` in the repository (git-ignored). Created on first use."""
    env = os.environ.get("MINIMOVQ_CKPT_DIR")
    if env:
        path = Path(env)
    elif Path("/content/drive/MyDrive").is_dir():
        path = Path("/content/drive/MyDrive/minimovq")
    else:
        path = Path(__file__).resolve().parents[1] / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` with the fix on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train the model first, or check the path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, pickled code objects, ...
        raise CheckpointError(
            f"could not read checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "The file is corrupt or truncated, or it holds pickled code that weights_only=True refuses. "
            "Delete it to start over, or restore it from a backup."
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def unwrap_state_dict(state: dict[str, Any], drop_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Return the model weights from a plain or Lightning-style (``{"state_dict": ...}``) checkpoint,
    without the entries whose key starts with one of ``drop_prefixes`` (e.g. ``"loss."``)."""
    sd = state.get("state_dict", state.get("model", state))
    if not isinstance(sd, dict):
        raise CheckpointError("checkpoint holds no state dict (looked for 'state_dict' and 'model')")
    return {k: v for k, v in sd.items() if not k.startswith(drop_prefixes) and isinstance(v, torch.Tensor)}


def run_checkpoint(name: str, profile=None, config: dict | None = None) -> Path | None:
    """The checkpoint file for a notebook's training run, e.g. ``run_checkpoint("01_vae")``.

    Returns ``checkpoint_dir() / f"{name}-{profile}.pt"``, or ``None`` in the ``quick`` profile so that CI runs
    always start fresh. Pass it as ``Trainer(..., ckpt_path=...)``: re-running the cell after a disconnect resumes
    from the last checkpoint instead of starting over. ``config`` (e.g. ``{"lr": LR, "label_drop": 0.1}``) adds
    a short hash of its items to the name, so that changing a hyperparameter starts a new run instead of
    resuming one trained with the old value.
    """
    from .profiles import get_profile

    profile = profile or get_profile()
    if profile.is_quick:
        return None
    if config:
        digest = hashlib.sha1(repr(sorted(config.items())).encode()).hexdigest()[:6]
        name = f"{name}-{digest}"
    return checkpoint_dir() / f"{name}-{profile.name}.pt"
