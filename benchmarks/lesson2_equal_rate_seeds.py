"""Does Lesson 2's comparison of a VQ-VAE with a VAE at the same rate hold over more seeds than the lesson runs?

    OMP_NUM_THREADS=1 python benchmarks/lesson2_equal_rate_seeds.py --seeds 2 3

Runs Lesson 2's solution notebook up to its table ``equal_rate`` with ``SEEDS`` replaced by ``--seeds`` (the
lesson races one VQ-VAE and one VAE per seed, each seed with its own initialisation and data order; seed 0 reuses
the quantizer race's model) and prints the quantizer race and that table. Each run trains from scratch in a
temporary checkpoint folder. About 3 minutes, plus 2 per seed, on one CPU core in the ``cpu`` profile.
"""
from __future__ import annotations

import argparse

from _notebook import execute, replace_once, solution_code_cells


def patched_cells(seeds: list[int]) -> list:
    """The solution's code cells up to the table ``equal_rate``, with ``SEEDS`` replaced."""
    cells = []
    for cell in solution_code_cells("02_vqvae"):
        if 'record("equal_rate"' in cell.source:
            cell.source = replace_once(cell.source, "SEEDS = (0, 1)", f"SEEDS = {tuple(seeds)!r}", "the seeds")
        cells.append(cell)
        if 'record("equal_rate"' in cell.source:
            return cells
    raise RuntimeError("Lesson 2 has no cell that records 'equal_rate': this benchmark needs updating")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    p.add_argument("--profile", default="cpu", choices=("quick", "cpu", "gpu"))
    a = p.parse_args()
    execute(patched_cells(a.seeds), a.profile, marker="psnr")


if __name__ == "__main__":
    main()
