"""Checkpoints that never lose a learner's work.

* :func:`save_checkpoint` writes to a temporary file in the same folder, then renames it over the target
  (``os.replace`` is atomic), so a crash or a disconnect mid-write leaves the previous checkpoint intact.
  Each save first removes the temporary files that earlier saves of the same checkpoint left behind when the
  process was killed mid-write, and a full disk is a :class:`CheckpointError` that says so (not torch's
  ``enforce fail at inline_container.cc``).
* :func:`load_checkpoint` always uses ``torch.load(..., weights_only=True)``, and turns an empty, corrupt or
  truncated file into a clear :class:`CheckpointError` naming the file and the fix.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

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


def first_line(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` of an exception, safe for an empty message (``EOFError()``)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:limit]}" if lines else type(e).__name__


def _stale_temp_files(path: Path) -> list[Path]:
    """The temporary files ``save_checkpoint`` makes for ``path`` (``<name>.<8 random chars>.tmp``)."""
    pattern = re.compile(re.escape(path.name) + r"\.[a-z0-9_]{8}\.tmp")
    return [f for f in path.parent.glob(path.name + ".*.tmp") if pattern.fullmatch(f.name)]


def _is_disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT, or torch's zip writer failing to write (it hides the errno:
    ``[enforce fail at inline_container.cc:...] ... file write failed`` / ``unexpected pos``)."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    msg = str(e)
    return isinstance(e, RuntimeError) and ("inline_container" in msg or "PytorchStreamWriter" in msg
                                            or "file write failed" in msg)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``.

    Temporary files of earlier saves of the same ``path`` that were killed mid-write are removed first (a
    process must not write the same checkpoint while another one does). On a full disk the previous checkpoint
    stays as it was and a :class:`CheckpointError` says how to make room."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temp_files(path):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, Exception) and _is_disk_full(e):
            try:
                free = f"{shutil.disk_usage(path.parent).free / 2 ** 20:.0f} MiB free there"
            except OSError:
                free = "free space unknown"
            kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
            raise CheckpointError(
                f"no space left on device writing {path} ({free}; {first_line(e, 120)}): free space (e.g. delete "
                f"old checkpoints in {path.parent}) or set MINIMOVQ_CKPT_DIR to a folder on a disk with room; "
                f"{kept}.") from e
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` with the fix on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train the model first, or check the path")
    fix = ("Delete it to start over (training then begins from step 0), or download / restore it again "
           "from its source or a backup.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): a save or a download was interrupted. {fix}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, pickled code objects, ...
        raise CheckpointError(
            f"could not read checkpoint {path} ({path.stat().st_size} bytes; {first_line(e)}). "
            "The file is corrupt or truncated, or it holds pickled code that weights_only=True refuses. "
            f"{fix}") from e
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


# resume checks: which optimizer hyperparameters changed since the checkpoint
_NOT_HPARAMS = {"params", "foreach", "fused", "capturable", "differentiable"}  # implementation switches


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def hparam_changes(saved: Mapping[str, Any], opt: torch.optim.Optimizer) -> list[tuple[int, str, Any, Any]]:
    """``[(group, name, saved value, new value)]`` for every optimizer hyperparameter that differs.

    With an lr scheduler the live ``lr`` moves during training, so ``initial_lr`` (set by the scheduler) is
    compared instead. A different number of parameter groups is reported as the change of ``groups``."""
    old_groups = saved.get("param_groups", [])
    if len(old_groups) != len(opt.param_groups):
        return [(0, "groups", len(old_groups), len(opt.param_groups))]
    out = []
    for i, (old, new) in enumerate(zip(old_groups, opt.param_groups, strict=True)):
        scheduled = "initial_lr" in old and "initial_lr" in new
        for name in sorted(set(old) & set(new) - _NOT_HPARAMS - ({"lr"} if scheduled else set())):
            if not _same(old[name], new[name]):
                out.append((i, name, _plain(old[name]), _plain(new[name])))
    return out


def describe_hparam_changes(changes: Mapping[str, list]) -> str:
    """``{optimizer name: hparam_changes(...)}`` as one readable line."""
    return "; ".join(f"'{k}'" + (f" group {i}" if i else "") + f" {name}: checkpoint {a!r}, now {b!r}"
                     for k, c in changes.items() for i, name, a, b in c)
