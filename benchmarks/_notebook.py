"""Run a lesson's solution notebook, patched, from a benchmark script (the seed checks behind the lessons)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "notebooks" / "solutions"


def solution_code_cells(stem: str) -> list:
    """The code cells of ``notebooks/solutions/<stem>_solution.ipynb``, in order (nbformat cells)."""
    import nbformat

    return [c for c in nbformat.read(SOLUTIONS / f"{stem}_solution.ipynb", as_version=4).cells if c.cell_type == "code"]


def replace_once(src: str, old: str, new: str, what: str) -> str:
    """``src`` with ``old`` replaced by ``new``; a clear error when the lesson changed and ``old`` is gone."""
    if old not in src:
        raise RuntimeError(f"the lesson no longer contains {old!r} ({what}): this benchmark needs updating")
    return src.replace(old, new)


def execute(cells: list, profile: str, marker: str) -> None:
    """Execute ``cells`` as one notebook in a fresh kernel and a temporary checkpoint folder (nothing is resumed);
    print every stdout output that contains ``marker``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=cells)
    os.environ.update(MINIMOVQ_PROFILE=profile, MINIMOVQ_CKPT_DIR=tempfile.mkdtemp(), MPLBACKEND="agg")
    NotebookClient(nb, timeout=7200, kernel_name="python3", resources={"metadata": {"path": str(SOLUTIONS)}}).execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and marker in out.get("text", ""):
                print(out["text"])
