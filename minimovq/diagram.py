"""The machinery of the architecture figures: trace one forward pass, then draw boxes with the measured shapes.

:mod:`minimovq.figures` (the public ``draw_*`` functions) and :mod:`minimovq.figures_models` (which modules
become which boxes) build on it.

``trace_shapes(model, run)`` hooks every submodule and runs ``run()`` once, recording each module's output shapes;
a :class:`Diagram` is a list of :class:`Stage` boxes (label, measured shape, kind, note) that :func:`render` draws.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Stage", "Diagram", "trace_shapes", "render"]

COLORS = {"io": "#ffffff", "conv": "#e6e6e6", "linear": "#e6e6e6", "resnet": "#cfe2f3", "attn": "#fce5cd",
          "resample": "#d9d2e9", "norm": "#d9ead3", "quant": "#fff2cc", "embed": "#d0e0e3", "head": "#f4cccc",
          "param": "#f3f3f3"}


@dataclass
class Stage:
    """One box: ``name`` the module path (or a pseudo-name like ``"x"``), ``label`` what it computes, ``shape``
    the measured output shape, ``kind`` its colour, ``note`` a third line, ``z_q`` the SpatialNorm paths inside
    it (MoVQ: where z_q enters), ``batched`` False for a parameter's shape (no batch axis)."""
    name: str
    label: str
    shape: tuple[int, ...]
    kind: str = "conv"
    note: str = ""
    z_q: tuple[str, ...] = ()
    batched: bool = True


@dataclass
class Diagram:
    """A figure as data: columns of stages, each stage's row, arrows between columns, and notes."""
    title: str
    columns: dict[str, list[Stage]]
    rows: dict[str, list[float]]
    xpos: dict[str, float]
    links: list[tuple[str, int, str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    z_q_source: tuple[str, int] | None = None  # the box z_q comes from (MoVQ)
    info: dict = field(default_factory=dict)   # measured extras: f, z_q shape, ...

    def stages(self) -> list[Stage]:
        return [s for col in self.columns.values() for s in col]

    def stage(self, name: str) -> Stage:
        for s in self.stages():
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {[s.name for s in self.stages()]}")

    def z_q_entries(self) -> list[str]:
        """Every module path where z_q enters (MoVQ's SpatialNorms), in call order."""
        return [n for s in self.stages() for n in s.z_q]


def _shapes(obj) -> list[tuple[int, ...]]:
    """Shapes of the tensors in a module's args or output (a tensor, or a tuple such as QuantizerOutput)."""
    if torch.is_tensor(obj):
        return [tuple(obj.shape)]
    if isinstance(obj, (tuple, list)):
        return [tuple(t.shape) for t in obj if torch.is_tensor(t)]
    return []


@contextmanager
def _quiet_eval(model: nn.Module):
    """Eval mode and no grad for one traced pass; restores every module's mode and the RNG state afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    p = next(model.parameters(), None)
    devices = [p.device.index or 0] if p is not None and p.device.type == "cuda" else []
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        for m, training in modes:
            m.training = training


def trace_shapes(model: nn.Module, run) -> dict[str, dict]:
    """Call ``run()`` once with a forward hook on every module of ``model`` ('' is the model itself).

    Returns ``{path: {"in": [input shapes], "out": [output shapes], "module": m}}`` in call order (first call)."""
    records, handles = {}, []
    for name, m in model.named_modules():
        def hook(mod, args, out, name=name):
            records.setdefault(name, {"in": _shapes(args), "out": _shapes(out), "module": mod})
        handles.append(m.register_forward_hook(hook))
    try:
        with _quiet_eval(model):
            run()
    finally:
        for h in handles:
            h.remove()
    return records


def _fmt(shape: tuple[int, ...], batched: bool = True) -> str:
    dims = ["B", *map(str, shape[1:])] if batched and shape else list(map(str, shape))
    return "(" + ", ".join(dims) + ")"


def render(d: Diagram):
    """Draw a Diagram as a block diagram; returns the matplotlib Figure (boxes: label, measured shape, note)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch
    W, H, PITCH = 3.5, 0.8, 4.4  # box width and height, column pitch (data units; rows are 1 apart)
    pos = {(c, i): (d.xpos[c] * PITCH, -r) for c, rows in d.rows.items() for i, r in enumerate(rows)}
    n_rows = max(max(r) for r in d.rows.values() if r) + 1
    xs = [x for x, _ in pos.values()]
    lo, hi = min(xs) - W / 2 - 0.2, max(xs) + W / 2 + (1.3 if d.z_q_source else 0.2)
    fig, ax = plt.subplots(figsize=((hi - lo) * 0.62, n_rows * 0.52 + 1.2 + 0.17 * len(d.notes)))
    ax.set_xlim(lo, hi)
    ax.set_ylim(-n_rows - (0.4 if d.z_q_source else 0.1), 1.0)
    ax.axis("off")
    arrow = dict(arrowstyle="-|>", lw=0.8, color="0.35", shrinkA=0, shrinkB=0)

    def link(a, b, **kw):
        (xa, ya), (xb, yb) = pos[a], pos[b]
        if abs(xa - xb) > W:  # side by side: edge to edge
            s = 1 if xb > xa else -1
            start, end = (xa + s * W / 2, ya), (xb - s * W / 2, yb)
        else:
            s = 1 if yb > ya else -1
            start, end = (xa, ya + s * H / 2), (xb, yb - s * H / 2)
        ax.annotate("", xy=end, xytext=start, arrowprops={**arrow, **kw})

    for c, stages in d.columns.items():
        for i, st in enumerate(stages):
            x, y = pos[(c, i)]
            ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle="round,pad=0,rounding_size=0.1",
                                        fc=COLORS.get(st.kind, "#ffffff"), ec="0.3", lw=0.8))
            dy = 0.22 if st.note else 0.12
            ax.text(x, y + dy, st.label, ha="center", va="center", fontsize=7)
            ax.text(x, y + dy - 0.24, _fmt(st.shape, st.batched), ha="center", va="center", fontsize=7.5,
                    family="monospace", weight="bold")
            if st.note:
                ax.text(x, y - 0.24, st.note, ha="center", va="center", fontsize=6.5, color="0.35")
            if i:
                link((c, i - 1), (c, i))
        if stages:
            top = min(range(len(stages)), key=lambda i: d.rows[c][i])
            ax.text(pos[(c, top)][0], pos[(c, top)][1] + H / 2 + 0.15, c, ha="center", fontsize=9, weight="bold",
                    bbox=dict(fc="white", ec="none", pad=0.5), zorder=10)
    for a, i, b, j in d.links:
        link((a, i), (b, j))
    if d.z_q_source:  # a red bus from the quantizer, under the decoder, up its right side, into every SpatialNorm
        red = "#cc0000"
        (xq, yq), bus_y = pos[d.z_q_source], -n_rows + 0.35
        col = next(c for c, st in d.columns.items() if any(s.z_q for s in st))
        hits = [(pos[(col, i)], len(s.z_q)) for i, s in enumerate(d.columns[col]) if s.z_q]
        bus_x = pos[(col, 0)][0] + W / 2 + 0.6
        ax.plot([xq, xq, bus_x, bus_x], [yq - H / 2, bus_y, bus_y, max(y for (_, y), _ in hits)], color=red, lw=1.2)
        ax.text((xq + bus_x) / 2, bus_y - 0.05, f"z_q {_fmt(d.info['z_q'])} → every SpatialNorm", color=red,
                ha="center", va="top", fontsize=7.5)
        for (x, y), n in hits:
            ax.annotate("", xy=(x + W / 2, y), xytext=(bus_x, y), arrowprops={**arrow, "color": red, "lw": 1.0})
            ax.text(bus_x - 0.3, y + 0.06, f"×{n}", color=red, ha="center", va="bottom", fontsize=7)
    ax.set_title(d.title, fontsize=9)
    if d.notes:
        fig.text(0.01, 0.005, "\n".join(d.notes), fontsize=7, va="bottom", ha="left", wrap=True)
    fig.tight_layout(rect=(0, 0.03 * len(d.notes), 1, 1))
    return fig
