"""Build the student and solution notebooks from one source per lesson.

Each lesson is written once, in ``notebooks/src/NN_name.py`` (percent format: a line ``# %%`` starts a code
cell, ``# %% [markdown]`` a markdown cell whose lines start with ``# ``). Inside code, a solution region::

    # BEGIN SOLUTION Exercise 1.1: sample z = mu + sigma * eps
    ...reference code...
    # END SOLUTION

is kept in ``notebooks/solutions/NN_name_solution.ipynb`` and replaced in the student notebook
``notebooks/NN_name.ipynb`` by ``raise NotImplementedError("Exercise 1.1: sample z = mu + sigma * eps")`` at the same
indentation.

A cell whose marker ends with ``solution-only`` (``# %% [markdown] solution-only`` or ``# %% solution-only``) appears
in the solution notebook only: the answers to "Check your understanding" go there.

Regenerating never silently overwrites a notebook whose cells differ from what was last generated (a learner's
edits): it refuses, names the notebook and says how to keep or overwrite it (``--force``). The generated cells'
fingerprint is stored in the notebook's metadata (``minimovq.generated``); only cell types and sources count, so
JupyterLab's metadata rewrites (kernel name, language info, key order) change nothing.

Placeholders stamped into every notebook:
    ``{{COLAB_BADGE}}``  the Open-in-Colab badge of that very notebook
    ``{{SETUP}}``        the Colab/local setup code (clone + install on Colab, profile, device)
    ``{{VARIANT}}``      "" in the student notebook, " (solutions)" in the solution notebook
    ``{{REPO_URL}}``     the repository URL

The repository URL lives in one place, ``pyproject.toml`` ``[tool.minimovq] repo``. Commands::

    python -m minimovq.authoring                 # regenerate every notebook
    python -m minimovq.authoring --check         # exit 1 if a generated notebook is out of date
    python -m minimovq.authoring --force         # regenerate, overwriting notebooks edited by hand
    python -m minimovq.authoring --workspace DIR # copy the student notebooks to DIR where missing (make lab)
    python -m minimovq.authoring --repo URL      # change the URL in pyproject, then regenerate
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
STUDENT = ROOT / "notebooks"
SOLUTION = ROOT / "notebooks" / "solutions"

_CELL = re.compile(r"^# %%(?:\s*\[(?P<kind>\w+)\])?(?P<only>\s+solution-only)?\s*$")
_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*(?P<msg>.*)$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")

SETUP = '''\
# Setup: on Colab, fetch the course and install it without touching torch, torchvision or numpy.
import os, subprocess, sys
IN_COLAB = "google.colab" in sys.modules
REPO_URL = "{repo}"
USE_DRIVE = False  # Colab: set True to keep checkpoints on Google Drive, so a disconnect loses nothing
if IN_COLAB:
    if USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
    if not os.path.isdir("/content/minimovq"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}", REPO_URL, "/content/minimovq"], check=True)
    # --no-deps: Colab already has torch, torchvision, numpy, matplotlib, tqdm and ipywidgets.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "/content/minimovq",
                    "einops", "lpips"], check=True)
    sys.path.insert(0, "/content/minimovq")

import torch
from minimovq.profiles import get_profile, seed_everything
P = get_profile()  # MINIMOVQ_PROFILE=quick|cpu|gpu; by default gpu with CUDA, else cpu
print(P.describe())
if P.is_quick:
    print("quick profile: a smoke test; its pictures and numbers mean nothing. Use MINIMOVQ_PROFILE=cpu for results.")
seed_everything(0)'''


@dataclass
class Cell:
    kind: str  # "code" | "markdown"
    lines: list[str]
    solution_only: bool = False


def read_config() -> dict[str, str]:
    """``[tool.minimovq]`` from pyproject.toml (repo URL and branch)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.minimovq]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', section, flags=re.M))


def parse(source: str) -> list[Cell]:
    """Split a percent-format source into cells."""
    cells: list[Cell] = []
    for line in source.splitlines():
        m = _CELL.match(line)
        if m:
            cells.append(Cell("markdown" if m.group("kind") == "markdown" else "code", [], bool(m.group("only"))))
        elif cells:
            cells[-1].lines.append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %%' cell marker: {line!r}")
    for c in cells:
        while c.lines and not c.lines[-1].strip():
            c.lines.pop()
        while c.lines and not c.lines[0].strip():
            c.lines.pop(0)
        if c.kind == "markdown":
            c.lines = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in c.lines]
    return [c for c in cells if c.lines]


def strip_solutions(lines: list[str], where: str = "") -> list[str]:
    """Replace each solution region by ``raise NotImplementedError(message)``."""
    out, inside = [], False
    for i, line in enumerate(lines):
        b = _BEGIN.match(line)
        if b:
            if inside:
                raise ValueError(f"{where}: nested '# BEGIN SOLUTION' at line {i + 1}")
            msg = b.group("msg").strip() or "Exercise: fill this in"
            out.append(f"{b.group('indent')}raise NotImplementedError({msg!r})")
            inside = True
        elif _END.match(line):
            if not inside:
                raise ValueError(f"{where}: '# END SOLUTION' without BEGIN at line {i + 1}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '# BEGIN SOLUTION' is never closed")
    return out


def keep_solutions(lines: list[str]) -> list[str]:
    return [ln for ln in lines if not (_BEGIN.match(ln) or _END.match(ln))]


def badge(repo: str, branch: str, relpath: str) -> str:
    slug = repo.rstrip("/").removesuffix(".git").split("github.com/")[-1]
    url = f"https://colab.research.google.com/github/{slug}/blob/{branch}/{relpath}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def build(src: Path, solution: bool, cfg: dict[str, str] | None = None) -> dict:
    """The notebook (as a JSON-ready dict) for one source and variant."""
    cfg = cfg or read_config()
    repo, branch = cfg["repo"], cfg.get("branch", "main")
    rel = f"notebooks/{'solutions/' if solution else ''}{src.stem}{'_solution' if solution else ''}.ipynb"
    subs = {"{{COLAB_BADGE}}": badge(repo, branch, rel), "{{SETUP}}": SETUP.format(repo=repo, branch=branch),
            "{{VARIANT}}": " (solutions)" if solution else "", "{{REPO_URL}}": repo}
    cells = []
    for i, c in enumerate(parse(src.read_text())):
        if c.solution_only and not solution:
            continue
        lines = c.lines
        if c.kind == "code":
            lines = keep_solutions(lines) if solution else strip_solutions(lines, f"{src.name} cell {i}")
        text = "\n".join(lines)
        for k, v in subs.items():
            text = text.replace(k, v)
        cid = hashlib.sha1(f"{src.stem}:{i}".encode()).hexdigest()[:8]
        cell = {"cell_type": c.kind, "id": cid, "metadata": {}, "source": text.splitlines(keepends=True)}
        if c.kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "minimovq": {"generated": fingerprint(cells)},
            "accelerator": "GPU",
            "colab": {"provenance": []},
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _content(cells: list[dict]) -> list[tuple[str, str]]:
    """What a notebook's cells say: (type, source) pairs. Outputs, ids and metadata do not count."""
    return [(c.get("cell_type", ""), "".join(c.get("source", ""))) for c in cells]


def fingerprint(cells: list[dict]) -> str:
    return hashlib.sha1(json.dumps(_content(cells), ensure_ascii=False).encode()).hexdigest()


def targets() -> list[tuple[Path, Path, bool]]:
    """(source, output path, is_solution) for every lesson."""
    out = []
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        out.append((src, STUDENT / f"{src.stem}.ipynb", False))
        out.append((src, SOLUTION / f"{src.stem}_solution.ipynb", True))
    return out


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stale() -> list[Path]:
    """Generated notebooks whose cells (types and sources) differ from what their source would produce now."""
    cfg = read_config()
    out = []
    for src, dst, sol in targets():
        nb = _read(dst)
        if nb is None or _content(nb.get("cells", [])) != _content(build(src, sol, cfg)["cells"]):
            out.append(dst)
    return out


def edited(path: Path) -> bool:
    """True when ``path``'s cells differ from what was last generated into it (someone edited it)."""
    nb = _read(path)
    if nb is None:
        return False
    stamp = nb.get("metadata", {}).get("minimovq", {}).get("generated")
    return stamp is not None and stamp != fingerprint(nb.get("cells", []))


class EditedNotebook(Exception):
    """Regenerating would overwrite edits made to a generated notebook."""


def write_all(force: bool = False) -> list[Path]:
    """Regenerate every notebook whose cells changed; refuse (EditedNotebook) to overwrite edited ones."""
    cfg = read_config()
    plans = []
    for src, dst, sol in targets():
        nb = build(src, sol, cfg)
        old = _read(dst)
        if old is not None and _content(old.get("cells", [])) == _content(nb["cells"]) \
                and old.get("metadata", {}).get("minimovq") == nb["metadata"]["minimovq"]:
            continue
        plans.append((dst, nb))
    blocked = [dst for dst, _ in plans if not force and edited(dst)]
    if blocked:
        names = "\n".join(f"  {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}" for p in blocked)
        raise EditedNotebook(
            f"not regenerating: these notebooks were edited since they were generated (a learner's work?):\n{names}\n"
            "To keep the edits, copy each notebook somewhere else first (e.g. into work/, which `make lab` uses), then "
            "run again with --force (`make notebooks FORCE=1`). To drop the edits, just run with --force.")
    written = []
    for dst, nb in plans:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(render(nb))
        written.append(dst)
    return written


def workspace(folder: Path) -> list[Path]:
    """Copy each student notebook into ``folder`` where it is missing; never overwrite (the learner's copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    created = []
    for _src, dst, sol in targets():
        mine = folder / dst.name
        if not sol and dst.exists() and not mine.exists():
            mine.write_text(dst.read_text())
            created.append(mine)
    return created


def set_repo(url: str) -> None:
    """Change the repository URL in pyproject.toml (the one place it lives)."""
    path = ROOT / "pyproject.toml"
    text = path.read_text()
    head, tail = text.split("[tool.minimovq]", 1)
    tail = re.sub(r'^repo\s*=\s*"[^"]*"', f'repo = "{url}"', tail, count=1, flags=re.M)
    head = re.sub(r'^Repository\s*=\s*"[^"]*"', f'Repository = "{url}"', head, count=1, flags=re.M)
    path.write_text(head + "[tool.minimovq]" + tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minimovq.authoring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if any generated notebook is out of date")
    ap.add_argument("--repo", help="set the repository URL (pyproject [tool.minimovq]) and regenerate")
    ap.add_argument("--force", action="store_true", help="overwrite generated notebooks even if they were edited")
    ap.add_argument("--workspace", metavar="DIR", help="copy the student notebooks into DIR where missing, and exit")
    args = ap.parse_args(argv)
    if args.workspace:
        folder = Path(args.workspace)
        for p in workspace(folder):
            print(f"created your copy {p}")
        print(f"your notebooks are in {folder}/ (git-ignored: `git pull` and `make notebooks` never touch them)")
        return 0
    if args.check:
        bad = stale()
        for p in bad:
            print(f"out of date: {p.relative_to(ROOT)}")
        if bad:
            print("run `make notebooks` (python -m minimovq.authoring) and commit the result")
        return 1 if bad else 0
    if args.repo:
        set_repo(args.repo)
    try:
        written = write_all(force=args.force)
    except EditedNotebook as e:
        print(e, file=sys.stderr)
        return 1
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
