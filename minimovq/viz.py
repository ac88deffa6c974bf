"""Pictures for the lessons: image grids, loss curves, side-by-side comparisons, and interactive widgets
that degrade gracefully where no widget frontend runs (CI, plain scripts)."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import torch


def to_image(x: torch.Tensor) -> torch.Tensor:
    """(C,H,W) or (B,C,H,W) in [-1, 1] -> float in [0, 1], channels last, on the CPU (for matplotlib)."""
    x = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return x.movedim(-3, -1)


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """(B,C,H,W) in [-1, 1] -> one (C, H', W') grid in [-1, 1], ``nrow`` images per row."""
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = (b + ncol - 1) // ncol
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding),
                      pad_value, dtype=images.dtype)
    for i in range(b):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y:y + h, x:x + w] = images[i].detach().cpu()
    return grid


def show_grid(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 1.0):
    """Show a batch (B,C,H,W) in [-1, 1] as a grid."""
    import matplotlib.pyplot as plt

    grid = to_image(make_grid(images.detach().float().cpu(), nrow=nrow))
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(scale * max(3, w / 40), scale * max(1.5, h / 40)))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray" if grid.shape[-1] == 1 else None,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def compare_grid(rows: Mapping[str, torch.Tensor], n: int = 8, title: str | None = None, scale: float = 1.3):
    """Rows of images side by side, e.g. ``{"input": x, "VAE": x_vae, "VQ-VAE": x_vq}`` (each (B,C,H,W))."""
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, axes = plt.subplots(len(names), 1, figsize=(scale * n, scale * 1.1 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=False):
        show_grid(rows[name][:n], nrow=n, ax=ax)
        ax.set_title(name, loc="left", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the same length as ``values``)."""
    if window <= 1:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_history(history: Mapping[str, Sequence[float]], keys: Iterable[str] | None = None, smooth: int = 0,
                 ax=None, logy: bool = False, title: str | None = None):
    """Plot training curves from a ``{name: [value per step]}`` mapping, optionally smoothed."""
    import matplotlib.pyplot as plt

    keys = list(keys) if keys is not None else list(history.keys())
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        vals = list(history[k])
        ax.plot(moving_average(vals, smooth) if smooth else vals, label=k)
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def zoom_crops(rows: Mapping[str, torch.Tensor], box: tuple[int, int, int], index: int = 0, scale: float = 2.5):
    """Zoomed crops of one image across methods: ``box = (top, left, size)`` in pixels."""
    import matplotlib.pyplot as plt

    top, left, size = box
    fig, axes = plt.subplots(1, len(rows), figsize=(scale * len(rows), scale), squeeze=False)
    for ax, (name, imgs) in zip(axes[0], rows.items(), strict=False):
        crop = imgs[index, :, top:top + size, left:left + size]
        ax.imshow(to_image(crop), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def widgets_available() -> bool:
    """True when ipywidgets is importable and a notebook kernel is running (a frontend may render it)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and hasattr(ip, "kernel")


def interactive(fn: Callable[..., object], **sliders: tuple) -> object:
    """An ipywidgets ``interact`` with graceful degradation.

    ``sliders`` maps argument names to ``(min, max, step, default)``. In a notebook with ipywidgets this shows
    sliders; elsewhere (CI, scripts, a frontend without widget support) it calls ``fn`` once with the
    defaults, so the cell still shows a result.
    """
    defaults = {k: v[3] if len(v) > 3 else v[0] for k, v in sliders.items()}
    if widgets_available():
        import ipywidgets as W

        controls = {}
        for k, (lo, hi, step, *rest) in sliders.items():
            init = rest[0] if rest else lo
            cls = W.IntSlider if all(isinstance(v, int) for v in (lo, hi, step, init)) else W.FloatSlider
            controls[k] = cls(min=lo, max=hi, step=step, value=init, description=k, continuous_update=False)
        return W.interact(fn, **controls)
    print("(ipywidgets frontend not available: showing the default setting; run in Jupyter for sliders)")
    return fn(**defaults)
