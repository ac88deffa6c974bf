"""Reference results anyone can see: run every solution notebook and keep what it printed.

``make reference`` (``python -m minimovq.reference``) executes each lesson's solution notebook in a fresh kernel
in the ``cpu`` profile and writes

* ``docs/reference/NN_name.ipynb``: the executed copy, outputs included, to read before running anything;
* ``docs/reference/results.json``: one entry per lesson, keyed by its notebook name (``"01_vae"``, ...)::

      {"profile": "cpu", "torch": "2.x", "date": "YYYY-MM-DD", "seconds": 612.3,
       "results": {"ablation": {"vqgan": {"psnr": ..., ...}, ...}, ...}}

``--profile gpu`` writes the same layout under ``docs/reference/gpu/``.

A lesson reports its headline tables with :func:`record`; outside ``make reference`` the call only returns the
table, so notebooks run the same everywhere::

    from minimovq.reference import record
    record("ablation", {"vqgan": {"psnr": 17.8, "ssim": 0.46}, ...})
    record("headline", f"EMA + restarts: PSNR {psnr:.1f} dB")   # one line for the README's lesson map

When only a lesson's text changed, ``--sync-text`` copies its markdown into the executed copy (refused when any
code differs: that needs a real run).

After a run, the README's reference block (between ``<!-- reference:begin -->`` and ``<!-- reference:end -->``)
is rewritten from results.json: a link to each executed copy and its headline, computed from the lesson's tables by
``minimovq.headlines`` (``--readme`` does only that).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .headlines import headline

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
ENV = "MINIMOVQ_RESULTS"  # the JSON file a notebook run records into (set by the runner)
MAX_BYTES = 2_000_000  # an executed copy should stay readable on GitHub

__all__ = ["record", "run_lesson", "reference_dir", "readme_block", "update_readme", "sync_text", "main"]


def _plain(value: Any) -> Any:
    """JSON-safe copy of a table: tensors and numpy scalars become floats, NaN becomes None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def record(name: str, table: Any) -> Any:
    """Record one headline table of this lesson under ``name`` and return ``table`` unchanged.

    ``table`` is a number, or a (nested) dict of numbers such as ``{arm: {metric: value}}``. Under ``make
    reference`` it is merged into that lesson's ``results`` in ``docs/reference/results.json``; elsewhere nothing
    is written."""
    path = os.environ.get(ENV)
    if path:
        p = Path(path)
        data = json.loads(p.read_text()) if p.exists() and p.stat().st_size else {}
        data[name] = _plain(table)
        p.write_text(json.dumps(data, indent=1))
    return table


def reference_dir(profile: str = "cpu") -> Path:
    """Where a profile's reference copies live: ``docs/reference`` (cpu) or ``docs/reference/<profile>``."""
    return REFERENCE if profile == "cpu" else REFERENCE / profile


def _solutions() -> dict[str, Path]:
    """``{"01_vae": path of its solution notebook, ...}`` from the lesson sources."""
    from . import authoring

    return {src.stem: dst for src, dst, solution in authoring.targets() if solution}


def _strip_widget_state(nb) -> None:
    """Drop ipywidgets state (large, and useless without a kernel) so that copies stay small."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)


def _columns(head: str) -> list[str]:
    """The column names of a ``format_table`` header: 12-character right-aligned fields after a blank margin."""
    for n in range(len(head) // 12, 0, -1):
        margin, fields = head[:len(head) - 12 * n], head[len(head) - 12 * n:]
        cols = [fields[12 * k:12 * (k + 1)].strip() for k in range(n)]
        if not margin.strip() and all(cols):
            return cols
    return []


def tables_from_outputs(nb) -> dict[str, Any]:
    """The tables a lesson printed with ``minimovq.metrics.format_table`` (a header of 12-character columns, then
    rows of a name and numbers), read back from an executed notebook: the results of a lesson that recorded none
    itself. Keys are ``table_1``, ``table_2``, ... in order; a table printed again (a summary) is kept once."""
    tables, seen = {}, []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            lines = [ln.rstrip() for ln in out.get("text", "").splitlines()]
            for i, head in enumerate(lines):
                cols = _columns(head) if head.startswith(" ") else []
                rows = {}
                for ln in lines[i + 1:]:
                    name, cells = ln[:len(ln) - 12 * len(cols)], ln[len(ln) - 12 * len(cols):]
                    try:
                        values = [float(cells[12 * k:12 * (k + 1)]) for k in range(len(cols))]
                    except ValueError:
                        break
                    if not cols or not name.strip():
                        break
                    rows[name.strip()] = dict(zip(cols, values, strict=True))
                if rows and rows not in seen:
                    seen.append(rows)
                    tables[f"table_{len(tables) + 1}"] = rows
    return tables


def _fresh_checkpoint_dir(path: Path) -> Path:
    """An empty checkpoint folder for one reference run, so that every model trains from scratch (a cached run
    checkpoint would make the recorded time, and possibly the results, those of an earlier run). Downloaded
    pretrained weights (``*.ckpt``, ``*.pth``) are linked in, so lessons that compare with them still can."""
    from .checkpoint import checkpoint_dir

    path.mkdir(parents=True, exist_ok=True)
    for f in checkpoint_dir().iterdir():
        if f.suffix in (".ckpt", ".pth") and f.is_file():
            (path / f.name).symlink_to(f.resolve())
    return path


def run_lesson(lesson: str, profile: str = "cpu", timeout: int = 3600) -> dict[str, Any]:
    """Execute one lesson's solution notebook; write its executed copy; return its results.json entry."""
    import nbformat
    import torch
    from nbclient import NotebookClient

    solutions = _solutions()
    if lesson not in solutions:
        raise ValueError(f"unknown lesson {lesson!r}; expected one of {', '.join(solutions)}")
    src = solutions[lesson]
    nb = nbformat.read(src, as_version=4)
    out_dir = reference_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        results_file = Path(tmp) / "results.json"
        ckpts = _fresh_checkpoint_dir(Path(tmp) / "checkpoints")
        env_backup = {k: os.environ.get(k) for k in (ENV, "MINIMOVQ_PROFILE", "MPLBACKEND", "MINIMOVQ_CKPT_DIR")}
        os.environ.update({ENV: str(results_file), "MINIMOVQ_PROFILE": profile, "MINIMOVQ_CKPT_DIR": str(ckpts),
                           "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
        start = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(src.parent)}}).execute()
        finally:
            for k, v in env_backup.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        seconds = time.perf_counter() - start
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
    _strip_widget_state(nb)
    if not results:  # a lesson that records nothing: keep the tables it printed
        results = tables_from_outputs(nb)
    dst = out_dir / f"{lesson}.ipynb"
    nbformat.write(nb, dst)
    size = dst.stat().st_size
    if size > MAX_BYTES:
        print(f"warning: {dst} is {size / 1e6:.1f} MB (aim for at most {MAX_BYTES / 1e6:.0f} MB): show fewer or "
              "smaller images", file=sys.stderr)
    return {"profile": profile, "torch": torch.__version__, "date": _dt.date.today().isoformat(),
            "seconds": round(seconds, 1), "results": results}


def sync_text(lesson: str, profile: str = "cpu") -> bool:
    """Copy a lesson's markdown into its executed copy when only the text changed; True if anything changed.

    The outputs stay those of the real run: this is allowed only when the copy and the solution notebook have the
    same cells in the same order with identical code. Otherwise raise ``ValueError``: the lesson must be re-run."""
    import nbformat

    src, dst = _solutions()[lesson], reference_dir(profile) / f"{lesson}.ipynb"
    if not dst.exists():
        raise ValueError(f"no reference copy {dst}: run `make reference LESSONS={lesson}`")
    new, old = nbformat.read(src, as_version=4), nbformat.read(dst, as_version=4)
    same = len(new.cells) == len(old.cells) and all(
        a.cell_type == b.cell_type and (a.cell_type != "code" or a.source == b.source)
        for a, b in zip(new.cells, old.cells, strict=True))
    if not same:
        raise ValueError(f"{dst}'s cells or code differ from {src}: re-run `make reference LESSONS={lesson}`")
    changed = False
    for a, b in zip(new.cells, old.cells, strict=True):
        if a.cell_type != "code" and a.source != b.source:
            b.source, changed = a.source, True
    if changed:
        nbformat.write(old, dst)
    return changed


README = ROOT / "README.md"
BEGIN, END = "<!-- reference:begin -->", "<!-- reference:end -->"


def readme_block(data: dict[str, Any], profile: str = "cpu") -> str:
    """The README's table of reference results, from results.json's ``data``."""
    rel = reference_dir(profile).relative_to(ROOT).as_posix()
    rows = ["| lesson | see the results before you run anything | headline (from `results.json`) | time |",
            "|---|---|---|---|"]
    for lesson, entry in sorted(data.items()):
        head = headline(lesson, entry.get("results", {}))
        rows.append(f"| {lesson} | [{rel}/{lesson}.ipynb]({rel}/{lesson}.ipynb) | {head} | "
                    f"{entry.get('seconds', 0) / 60:.1f} min ({entry.get('profile')}, torch {entry.get('torch')}, "
                    f"{entry.get('date')}) |")
    return "\n".join(rows)


def update_readme(profile: str = "cpu") -> bool:
    """Rewrite the README's reference block from results.json; False when the README has no block."""
    index = reference_dir(profile) / "results.json"
    text = README.read_text()
    if BEGIN not in text or END not in text or not index.exists():
        return False
    data = json.loads(index.read_text())
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{BEGIN}\n{readme_block(data, profile)}\n{END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run solution notebooks and write docs/reference/ (make reference).")
    p.add_argument("lessons", nargs="*", help="lesson names such as 04_movq (default: every lesson)")
    p.add_argument("--profile", default="cpu", choices=("quick", "cpu", "gpu"))
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument("--readme", action="store_true", help="only rewrite the README's block from results.json")
    p.add_argument("--sync-text", action="store_true",
                   help="copy the lessons' changed markdown into their executed copies (code unchanged; no re-run)")
    a = p.parse_args(argv)
    if a.readme:
        return 0 if update_readme(a.profile) else 1
    if a.sync_text:
        for lesson in a.lessons or [k for k in _solutions() if (reference_dir(a.profile) / f"{k}.ipynb").exists()]:
            print(f"{lesson}: {'text updated' if sync_text(lesson, a.profile) else 'up to date'}")
        return 0
    lessons = a.lessons or list(_solutions())
    index = reference_dir(a.profile) / "results.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    for lesson in lessons:
        print(f"== {lesson} ({a.profile} profile)", flush=True)
        entry = run_lesson(lesson, a.profile, a.timeout)
        data = json.loads(index.read_text()) if index.exists() else {}
        data[lesson] = entry
        index.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")  # after each lesson: keep progress
        print(f"   {entry['seconds']:.0f} s, results: {', '.join(entry['results']) or 'none recorded'}", flush=True)
    if a.profile == "cpu":
        update_readme(a.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
